"""Group commit: threads that arrive together share a round; each gets its own
outcome; a thread alone does not wait."""

import threading

from apps.core.group_commit import GroupCommit, Item


class Add(Item):
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n


def test_a_thread_alone_is_a_round_of_its_own():
    rounds = []

    def flush(items):
        rounds.append([i.n for i in items])
        for i in items:
            i.result = i.n * 10

    group = GroupCommit(flush)
    assert group.submit(Add(1)).result == 10
    assert group.submit(Add(2)).result == 20
    assert rounds == [[1], [2]]


def test_threads_arriving_during_a_round_share_the_next_one():
    # given a first round that holds until five more threads are waiting
    first_round_started = threading.Event()
    release = threading.Event()
    rounds = []

    def flush(items):
        rounds.append(sorted(i.n for i in items))
        if len(rounds) == 1:
            first_round_started.set()
            release.wait(5)
        for i in items:
            if i.n == 13:
                i.error = ValueError("thirteen")
            else:
                i.result = i.n * 10

    group = GroupCommit(flush)
    outcomes = {}

    def submit(n):
        item = group.submit(Add(n))
        outcomes[n] = item.error or item.result

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert first_round_started.wait(5)
    others = [threading.Thread(target=submit, args=(n,)) for n in (11, 12, 13, 14, 15)]
    for t in others:
        t.start()
    while len(group._waiting) < 5:  # they queue behind the round in progress
        threading.Event().wait(0.001)
    # when the first round ends
    release.set()
    for t in [first, *others]:
        t.join(5)
    # then the five went together in the second round, each with its own outcome
    assert rounds == [[0], [11, 12, 13, 14, 15]]
    assert {n: o for n, o in outcomes.items() if n != 13} == {
        0: 0,
        11: 110,
        12: 120,
        14: 140,
        15: 150,
    }
    assert isinstance(outcomes[13], ValueError)


def test_a_flush_that_raises_fails_its_round_and_nobody_hangs():
    def flush(items):
        raise RuntimeError("broken")

    group = GroupCommit(flush)
    item = group.submit(Add(1))
    assert isinstance(item.error, RuntimeError)
    # and the next round runs
    group._flush = lambda items: [setattr(i, "result", "ok") for i in items]
    assert group.submit(Add(2)).result == "ok"
