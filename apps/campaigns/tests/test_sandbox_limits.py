"""Each limit the template sandbox sets holds with the installed python-liquid.

python-liquid honours a limit only from some version on (block nesting from 2.3.0;
loop iterations counted across nested ``tablerow`` loops only after 2.3.0), and an
Environment attribute that a version does not know is silently ignored: so each
limit has a test here, at the value Nudge sets, and pyproject.toml pins the
versions where all of them hold. Each test renders at the limit (allowed) and just
past it (refused), so it proves Nudge's value, not python-liquid's default.
"""

import tomllib
from pathlib import Path

import liquid
import pytest
from packaging.requirements import Requirement

from apps.campaigns.rendering import HTML_ENV, RenderError, SafeEnvironment

LIMITS = SafeEnvironment


def render(source: str, **context) -> str:
    try:
        return HTML_ENV.from_string(source).render(**context)
    except Exception as exc:  # what render_string turns into a RenderError
        raise RenderError(str(exc)) from exc


def nested(open_tag: str, close_tag: str, depth: int) -> str:
    return open_tag * depth + "x" + close_tag * depth


def test_blocks_nest_up_to_the_block_nesting_limit_and_no_deeper():
    depth = LIMITS.block_nesting_limit
    assert render(nested("{% if true %}", "{% endif %}", depth)) == "x"
    with pytest.raises(RenderError, match="block nesting limit"):
        render(nested("{% if true %}", "{% endif %}", depth + 1))


def test_loops_run_up_to_the_loop_iteration_limit_and_no_further():
    # given nested loops whose iterations multiply to the limit, then one row more
    rows = LIMITS.loop_iteration_limit // 100
    at_limit = "{% for a in (1..R) %}{% for b in (1..100) %}{% endfor %}{% endfor %}"
    # when / then
    assert render(at_limit.replace("R", str(rows))) == ""
    with pytest.raises(RenderError, match="loop iteration limit"):
        render(at_limit.replace("R", str(rows + 1)))


def test_nested_tablerow_loops_count_towards_the_loop_iteration_limit():
    # python-liquid 2.3.0 and older counted each tablerow on its own: two nested
    # ones ran 200 x 200 = 40,000 iterations under a limit of 10,000.
    side = 200
    assert side * side > LIMITS.loop_iteration_limit
    source = (
        f"{{% tablerow a in (1..{side}) %}}{{% tablerow b in (1..{side}) %}}"
        "{% endtablerow %}{% endtablerow %}"
    )
    with pytest.raises(RenderError, match="loop iteration limit"):
        render(source)


def test_output_grows_up_to_the_output_stream_limit_and_no_further():
    # given loops that write exactly the limit (in 1,000-character chunks)
    chunk = "x" * 1000
    rows = LIMITS.output_stream_limit // len(chunk) // 100
    source = (
        f"{{% for a in (1..{rows}) %}}{{% for b in (1..100) %}}{{{{ chunk }}}}"
        "{% endfor %}{% endfor %}"
    )
    # when / then: one character more is refused
    assert len(render(source, chunk=chunk)) == LIMITS.output_stream_limit
    with pytest.raises(RenderError, match="output stream limit"):
        render(source + "!", chunk=chunk)


def test_assigned_variables_grow_up_to_the_local_namespace_limit_and_no_further():
    # given a string doubled by assign until it passes the limit
    doublings = (LIMITS.local_namespace_limit).bit_length()
    source = (
        "{% assign s = 'x' %}"
        f"{{% for i in (1..{doublings}) %}}{{% assign s = s | append: s %}}{{% endfor %}}"
        "{{ s | size }}"
    )
    small = source.replace(f"(1..{doublings})", f"(1..{doublings - 3})")
    # when / then
    assert int(render(small)) == 2 ** (doublings - 3)
    with pytest.raises(RenderError, match="local namespace limit"):
        render(source)


def test_scopes_stack_no_deeper_than_the_context_depth_limit():
    # Each for loop pushes a scope; the block nesting limit alone would allow
    # context_depth_limit loops (python-liquid's default depth limit, 30, too).
    depth = LIMITS.context_depth_limit
    assert depth <= LIMITS.block_nesting_limit
    assert render(nested("{% for i in (1..1) %}", "{% endfor %}", 5)) == "x"
    with pytest.raises(RenderError, match="context depth"):
        render(nested("{% for i in (1..1) %}", "{% endfor %}", depth))


def test_the_installed_python_liquid_is_in_the_range_pyproject_pins():
    # A virtualenv built before the pin moved would keep an older python-liquid:
    # the version imported, not just the one installed, must be in the range.
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in dependencies if d.startswith("python-liquid")]
    assert pin.specifier.contains(liquid.__version__)
