"""Session queues: priority first, order within a priority, TTL expiry, redelivery order."""

from edgehub_sim.mqtt.session import QueuedMessage, Session


def message(seq: int, priority: int = 0, expires_at: float = 1e12) -> QueuedMessage:
    return QueuedMessage(seq, priority, expires_at, f"t/{seq}", b"")


def drain(session: Session, now: float = 0.0) -> list[int]:
    out: list[int] = []
    while True:
        next_message, _ = session.pop_next(now)
        if next_message is None:
            return out
        out.append(next_message.seq)


def test_higher_priority_drains_first_and_order_is_kept_within_a_priority() -> None:
    session = Session("d/m", set(), persisted=False)
    for seq, priority in [(1, 5), (2, 0), (3, 5), (4, 0), (5, 9)]:
        session.push(message(seq, priority))
    assert drain(session) == [2, 4, 1, 3, 5]


def test_expired_messages_are_skipped_and_reported() -> None:
    session = Session("d/m", set(), persisted=False)
    session.push(message(1, expires_at=10))
    session.push(message(2, expires_at=30))
    first, expired = session.pop_next(now=20)
    assert first is not None and first.seq == 2
    assert [m.seq for m in expired] == [1]


def test_inflight_messages_return_to_the_front_flagged_dup() -> None:
    session = Session("d/m", set(), persisted=False)
    for seq in range(1, 5):
        session.push(message(seq))
    for packet_id in (10, 11):
        sent, _ = session.pop_next(0)
        assert sent is not None
        session.inflight[packet_id] = sent
    session.requeue_inflight()
    first, _ = session.pop_next(0)
    assert first is not None and (first.seq, first.dup) == (1, True)
    assert drain(session) == [2, 3, 4]
    assert session.queued_count() == 0
