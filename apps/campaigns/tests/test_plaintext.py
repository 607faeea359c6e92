"""The plain-text part made from an email's HTML: readable, with its links."""

from apps.campaigns.plaintext import html_to_text


def test_blocks_lists_tables_and_links_become_readable_text():
    html = (
        "<html><head><title>x</title><style>p{color:red}</style></head><body>"
        "<h1>Hi   Ada,</h1><p>Here is what's <b>new</b>.</p>"
        "<table>\n <tr>\n  <td><a href='https://x.example/p/1'>Boots</a></td>\n"
        "  <td>€12.00</td>\n </tr>\n <tr><td>Socks</td><td>€3.00</td></tr>\n</table>"
        "<ul><li>one</li><li>two</li></ul>"
        "<p><a href='https://x.example/new'>See all</a><br>line two</p>"
        "<div>1 Example St <a href='https://u.example/'>Unsubscribe</a></div>"
        "<script>alert(1)</script><img src='x.png' alt='Logo'>"
        "</body></html>"
    )

    assert html_to_text(html) == (
        "Hi Ada,\n\n"
        "Here is what's new.\n\n"
        "[Boots](https://x.example/p/1)   €12.00\n"
        "Socks  €3.00\n\n"
        "* one\n* two\n\n"
        "[See all](https://x.example/new)\nline two\n\n"
        "1 Example St [Unsubscribe](https://u.example/)\nLogo"
    )


def test_a_link_whose_text_is_its_address_is_written_once():
    assert html_to_text("<a href='https://x.example'>https://x.example</a>") == (
        "https://x.example"
    )
    assert html_to_text("<a href='https://x.example'><img src='a.png'></a>") == (
        "https://x.example"
    )


def test_entities_are_decoded_and_empty_html_gives_nothing():
    assert html_to_text("<p>Fish &amp; chips &lt;3</p>") == "Fish & chips <3"
    assert html_to_text("") == ""
