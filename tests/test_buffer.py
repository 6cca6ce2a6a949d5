"""Contract tests for agent.buffer.ReplayBuffer (fast, numpy only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import agent.buffer_io as buffer_module
from agent.buffer import ReplayBuffer, Sequences

OBS_SHAPE = (2,)
A = 2


def _add_step(buf: ReplayBuffer, step: int, *, terminated: bool = False, truncated: bool = False) -> None:
    """Add a transition whose every field encodes the global step counter."""
    buf.add(
        obs=np.full(buf.obs_shape, step, dtype=np.float32),
        action=np.full(buf.action_dim, 0.5 * step, dtype=np.float32),
        reward=float(step),
        cost=float(-step),
        terminated=terminated,
        truncated=truncated,
        next_obs=np.full(buf.obs_shape, step + 1, dtype=np.float32),
    )


def _fill_episodes(buf: ReplayBuffer, episodes: list[tuple[int, str]]) -> dict[int, str]:
    """Add episodes of given lengths ending ``"term"``/``"trunc"``/``"open"``.

    Returns the end kind of each global step that ends an episode.
    """
    step, ends = 0, {}
    for length, end in episodes:
        for k in range(length):
            last = k == length - 1
            term, trunc = last and end == "term", last and end == "trunc"
            _add_step(buf, step, terminated=term, truncated=trunc)
            if term or trunc:
                ends[step] = end
            step += 1
    return ends


def _assert_valid_windows(seq: Sequences, ends: dict[int, str], length: int) -> None:
    """Consecutive steps, time-major shapes, and done flags only at the last step."""
    batch = seq.actions.shape[1]
    assert seq.obs.shape == (length + 1, batch, *OBS_SHAPE)
    assert seq.actions.shape == (length, batch, A)
    for field in (seq.rewards, seq.costs, seq.terminated, seq.truncated):
        assert field.shape == (length, batch)
    counters = seq.obs[..., 0]  # (T+1, B)
    np.testing.assert_array_equal(np.diff(counters, axis=0), 1.0)
    np.testing.assert_array_equal(seq.rewards, counters[:-1])
    np.testing.assert_array_equal(seq.actions[..., 0], 0.5 * counters[:-1])
    steps = counters[:-1].astype(int)
    expect_term = np.vectorize(lambda s: ends.get(s) == "term")(steps)
    expect_trunc = np.vectorize(lambda s: ends.get(s) == "trunc")(steps)
    np.testing.assert_array_equal(seq.terminated, expect_term)
    np.testing.assert_array_equal(seq.truncated, expect_trunc)
    assert not (seq.terminated[:-1] | seq.truncated[:-1]).any()


# ---------------------------------------------------------------- add / len


def _valid_add_kwargs() -> dict[str, Any]:
    return {
        "obs": np.zeros(OBS_SHAPE),
        "action": np.zeros(A),
        "reward": 0.0,
        "cost": 0.0,
        "terminated": False,
        "truncated": False,
        "next_obs": np.zeros(OBS_SHAPE),
    }


def test_add_len_and_circular_overwrite_order() -> None:
    buf = ReplayBuffer(5, OBS_SHAPE, A)
    assert len(buf) == 0
    for step in range(7):
        _add_step(buf, step)
        assert len(buf) == min(step + 1, 5)
    state = buf.state_dict()
    assert state["position"] == 2
    assert state["size"] == 5
    # slots 0, 1 were overwritten by steps 5, 6; oldest (2) sits at the write pointer
    np.testing.assert_array_equal(np.asarray(state["obs"])[:, 0], [5, 6, 2, 3, 4])
    # the only full-length window runs oldest -> newest across the array end
    seq = buf.sample_sequences(3, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(seq.obs[:, 0, 0], [2, 3, 4, 5, 6, 7])


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("obs", np.zeros(3)),
        ("next_obs", np.zeros((2, 1))),
        ("action", np.zeros(A + 1)),
    ],
)
def test_add_wrong_shape_raises_with_both_shapes(field: str, bad: np.ndarray) -> None:
    buf = ReplayBuffer(4, OBS_SHAPE, A)
    kwargs = _valid_add_kwargs()
    kwargs[field] = bad
    expected = OBS_SHAPE if field != "action" else (A,)
    with pytest.raises(ValueError, match="expected shape") as info:
        buf.add(**kwargs)
    assert str(expected) in str(info.value)
    assert str(bad.shape) in str(info.value)
    assert len(buf) == 0


@pytest.mark.parametrize("field", ["obs", "next_obs", "action", "reward", "cost"])
def test_add_non_finite_raises(field: str) -> None:
    buf = ReplayBuffer(4, OBS_SHAPE, A)
    kwargs = _valid_add_kwargs()
    kwargs[field] = np.nan if field in ("reward", "cost") else kwargs[field] + np.inf
    with pytest.raises(ValueError, match="finite"):
        buf.add(**kwargs)
    assert len(buf) == 0


def test_float_frames_into_uint8_buffer_raise() -> None:
    buf = ReplayBuffer(4, (3, 4, 4), A, np.uint8)
    frame = np.zeros((3, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="uint8"):
        buf.add(frame, np.zeros(A), 0.0, 0.0, False, False, frame)


# ----------------------------------------------------------------- sampling


def test_sample_shapes_and_values_come_from_buffer() -> None:
    buf = ReplayBuffer(50, OBS_SHAPE, A)
    for step in range(20):
        _add_step(buf, step, terminated=step % 7 == 6, truncated=step % 5 == 4)
    rng = np.random.default_rng(1)

    batch = buf.sample(32, rng)
    assert batch.obs.shape == (32, *OBS_SHAPE)
    assert batch.next_obs.shape == (32, *OBS_SHAPE)
    assert batch.actions.shape == (32, A)
    for field in (batch.rewards, batch.costs, batch.terminated, batch.truncated):
        assert field.shape == (32,)
    assert batch.obs.dtype == np.float32
    assert batch.actions.dtype == np.float32
    assert batch.terminated.dtype == bool

    ens = buf.sample(16, rng, ensemble_size=4)
    for field in ens:
        assert field.shape[:2] == (4, 16)
    assert ens.obs.shape == (4, 16, *OBS_SHAPE)
    assert ens.actions.shape == (4, 16, A)
    # independent indices per member
    assert not all(np.array_equal(ens.obs[0], ens.obs[e]) for e in range(1, 4))

    for b in (batch, ens):
        counter = b.obs[..., 0]
        assert set(np.unique(counter)) <= set(range(20))
        np.testing.assert_array_equal(b.obs[..., 1], counter)
        np.testing.assert_array_equal(b.next_obs[..., 0], counter + 1)
        np.testing.assert_array_equal(b.rewards, counter)
        np.testing.assert_array_equal(b.costs, -counter)
        np.testing.assert_array_equal(b.terminated, counter % 7 == 6)
        np.testing.assert_array_equal(b.truncated, counter % 5 == 4)


def test_sample_only_from_filled_slots_and_empty_raises() -> None:
    buf = ReplayBuffer(100, OBS_SHAPE, A)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(4, np.random.default_rng(0))
    for step in range(1, 4):
        _add_step(buf, step)
    got = buf.sample(500, np.random.default_rng(0)).obs[:, 0]
    assert set(np.unique(got)) == {1.0, 2.0, 3.0}  # never an unwritten zero slot


def test_sample_recent_draws_only_the_newest_transitions_across_the_wrap() -> None:
    buf = ReplayBuffer(10, OBS_SHAPE, A)
    for step in range(1, 15):  # slots hold steps 5..14 and the ring has wrapped
        _add_step(buf, step)
    got = buf.sample(400, np.random.default_rng(0), ensemble_size=2, recent=4)
    assert got.obs.shape == (2, 400, *OBS_SHAPE)
    assert set(np.unique(got.obs[..., 0])) == {11.0, 12.0, 13.0, 14.0}
    np.testing.assert_array_equal(got.next_obs[..., 0], got.obs[..., 0] + 1)  # whole transitions
    everything = buf.sample(400, np.random.default_rng(0), recent=50)  # more than stored: all of it
    assert set(np.unique(everything.obs[:, 0])) == set(range(5, 15))
    with pytest.raises(ValueError, match="recent"):
        buf.sample(4, np.random.default_rng(0), recent=0)


def test_sequences_stay_inside_episodes_and_cover_all_valid_starts() -> None:
    buf = ReplayBuffer(100, OBS_SHAPE, A)
    episodes = [(3, "term"), (7, "trunc"), (5, "term"), (10, "trunc"), (4, "open")]
    ends = _fill_episodes(buf, episodes)
    length = 4
    seq = buf.sample_sequences(600, length, np.random.default_rng(2))
    _assert_valid_windows(seq, ends, length)
    # every window start fully inside one episode is drawn; nothing else is
    expected, first = set(), 0
    for n, _ in episodes:
        expected |= set(range(first, first + n - length + 1))
        first += n
    assert set(seq.obs[0, :, 0].astype(int)) == expected
    # both kinds of episode end appear, and stay distinct
    assert seq.terminated[-1].any()
    assert seq.truncated[-1].any()
    assert not (seq.terminated & seq.truncated).any()


def test_sequences_never_cross_the_write_pointer_when_full() -> None:
    buf = ReplayBuffer(20, OBS_SHAPE, A)
    ends = _fill_episodes(buf, [(12, "trunc"), (9, "term"), (14, "open")])  # 35 steps
    seq = buf.sample_sequences(300, 6, np.random.default_rng(3))
    _assert_valid_windows(seq, ends, 6)
    assert seq.obs[:-1, :, 0].min() >= 15  # oldest stored step
    assert seq.obs[-1, :, 0].max() <= 35  # next_obs of the newest step


def test_sequences_fall_back_when_valid_windows_are_rare() -> None:
    buf = ReplayBuffer(200, OBS_SHAPE, A)
    episodes = [(1, "term")] * 150 + [(8, "trunc")] + [(1, "trunc")] * 20
    ends = _fill_episodes(buf, episodes)
    seq = buf.sample_sequences(16, 8, np.random.default_rng(4))
    _assert_valid_windows(seq, ends, 8)
    np.testing.assert_array_equal(seq.obs[0, :, 0], 150)


def test_sequences_error_when_episodes_too_short() -> None:
    buf = ReplayBuffer(50, OBS_SHAPE, A)
    _fill_episodes(buf, [(3, "term"), (4, "trunc"), (2, "term")])
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="shorter than 5"):
        buf.sample_sequences(4, 5, rng)
    with pytest.raises(ValueError, match="length 10"):
        buf.sample_sequences(4, 10, rng)
    # the last step may be done: length 4 fits the 4-step truncated episode exactly
    seq = buf.sample_sequences(4, 4, rng)
    np.testing.assert_array_equal(seq.obs[0, :, 0], 3)
    assert seq.truncated[-1].all()
    assert not seq.terminated.any()


# --------------------------------------------------------------- save / load


def _filled(capacity: int, n: int) -> ReplayBuffer:
    buf = ReplayBuffer(capacity, OBS_SHAPE, A)
    for step in range(n):
        _add_step(buf, step, terminated=step % 6 == 5, truncated=step % 9 == 8)
    return buf


def _assert_same_state(a: ReplayBuffer, b: ReplayBuffer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        va, vb = np.asarray(sa[key]), np.asarray(sb[key])
        assert va.dtype == vb.dtype, key
        np.testing.assert_array_equal(va, vb, err_msg=key)


def _assert_same_samples(a: ReplayBuffer, b: ReplayBuffer, seed: int) -> None:
    ra, rb = np.random.default_rng(seed), np.random.default_rng(seed)
    for x, y in [
        (a.sample(8, ra, ensemble_size=3), b.sample(8, rb, ensemble_size=3)),
        (a.sample_sequences(5, 3, ra), b.sample_sequences(5, 3, rb)),
    ]:
        for fx, fy in zip(x, y, strict=True):
            np.testing.assert_array_equal(fx, fy)


@pytest.mark.parametrize("n", [0, 7, 23])  # empty, partly full, wrapped
def test_save_load_round_trip(tmp_path: Path, n: int) -> None:
    original = _filled(10, n)
    path = tmp_path / "buffer.npz"
    original.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.npz"]  # no temp left

    restored = ReplayBuffer.load(path)
    assert len(restored) == len(original)
    assert restored.capacity == 10
    assert restored.obs_shape == OBS_SHAPE
    assert restored.action_dim == A
    _assert_same_state(original, restored)
    if n:
        _assert_same_samples(original, restored, seed=n)
    for step in range(100, 106):
        _add_step(original, step, truncated=step == 103)
        _add_step(restored, step, truncated=step == 103)
    _assert_same_state(original, restored)
    _assert_same_samples(original, restored, seed=7)


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "buffer.npz"
    _filled(10, 3).save(path)
    _filled(10, 8).save(path)
    assert len(ReplayBuffer.load(path)) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.npz"]


def test_load_truncated_file_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "buffer.npz"
    _filled(10, 10).save(path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 10, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="cannot read ReplayBuffer file"):
            ReplayBuffer.load(path)


def test_load_foreign_files_give_clear_error(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match="not a ReplayBuffer file"):
        ReplayBuffer.load(foreign)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ValueError, match="not an .npz"):
        ReplayBuffer.load(single)
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.load(tmp_path / "missing.npz")


def test_load_state_dict_into_used_buffer_replaces_everything() -> None:
    original = _filled(10, 4)
    reused = _filled(10, 17)
    reused.load_state_dict(original.state_dict())
    _assert_same_state(original, reused)
    for step in range(50, 58):  # continue identically, wrapping around
        _add_step(original, step, terminated=step == 55)
        _add_step(reused, step, terminated=step == 55)
        assert len(original) == len(reused)
    _assert_same_state(original, reused)
    _assert_same_samples(original, reused, seed=3)


def test_load_state_dict_validates() -> None:
    state = _filled(10, 4).state_dict()
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(12, OBS_SHAPE, A).load_state_dict(state)
    with pytest.raises(ValueError, match="'obs'"):
        ReplayBuffer(10, (3,), A).load_state_dict(state)
    with pytest.raises(ValueError, match="'actions'"):
        bad = dict(state, actions=np.asarray(state["actions"], dtype=np.float64))
        ReplayBuffer(10, OBS_SHAPE, A).load_state_dict(bad)
    with pytest.raises(ValueError, match="inconsistent"):
        ReplayBuffer(10, OBS_SHAPE, A).load_state_dict(dict(state, position=1))
    with pytest.raises(ValueError, match="missing keys"):
        ReplayBuffer(10, OBS_SHAPE, A).load_state_dict({"obs": state["obs"]})


# -------------------------------------------------------- memory and dtypes


def test_huge_capacity_is_refused_with_helpful_message() -> None:
    with pytest.raises(MemoryError) as info:
        ReplayBuffer(10**9, (3, 84, 84), 6, np.float32)
    msg = str(info.value)
    assert "GiB" in msg
    assert "--train-buffer-capacity" in msg  # the flag that exists (issue 41)
    assert "uint8" in msg


def test_memory_check_uses_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    need = ReplayBuffer.estimate_bytes(100, OBS_SHAPE, A)
    monkeypatch.setattr(buffer_module, "available_memory_bytes", lambda: need)
    ReplayBuffer(100, OBS_SHAPE, A, max_memory_fraction=1.0)
    with pytest.raises(MemoryError, match="smaller capacity"):
        ReplayBuffer(100, OBS_SHAPE, A, max_memory_fraction=0.5)
    monkeypatch.setattr(buffer_module, "available_memory_bytes", lambda: None)
    ReplayBuffer(100, OBS_SHAPE, A, max_memory_fraction=1e-9)  # unknown: no check


def test_available_memory_is_positive_here() -> None:
    avail = buffer_module.available_memory_bytes()
    assert avail is None or avail > 0


def test_uint8_frames_stay_uint8_and_estimate_matches() -> None:
    frame_shape = (3, 8, 8)
    buf = ReplayBuffer(6, frame_shape, A, np.uint8)
    for step in range(6):
        frame = np.full(frame_shape, 40 * step, dtype=np.uint8)
        done = step == 5
        buf.add(frame, np.zeros(A), 1.0, 0.0, done, False, frame + 1)
    rng = np.random.default_rng(0)
    assert buf.sample(4, rng).obs.dtype == np.uint8
    assert buf.sample(4, rng, ensemble_size=2).next_obs.dtype == np.uint8
    seq = buf.sample_sequences(2, 3, rng)
    assert seq.obs.dtype == np.uint8
    assert seq.obs.shape == (4, 2, *frame_shape)

    state = buf.state_dict()  # full buffer: arrays are the whole storage
    stored = sum(v.nbytes for v in state.values() if isinstance(v, np.ndarray))
    assert stored == ReplayBuffer.estimate_bytes(6, frame_shape, A, np.uint8)
    assert buf.nbytes == stored
    assert ReplayBuffer.estimate_bytes(6, frame_shape, A, np.float32) > 3 * stored


def test_sequences_across_episodes_draw_every_start_and_mask_after_the_end() -> None:
    buf = ReplayBuffer(100, OBS_SHAPE, A)
    ends = _fill_episodes(buf, [(3, "term"), (7, "trunc"), (2, "term"), (10, "open")])  # 22 steps
    length = 4
    seq = buf.sample_sequences(800, length, np.random.default_rng(6), across_episodes=True)
    starts = seq.obs[0, :, 0].astype(int)
    assert set(starts) == set(range(22 - length + 1))  # short episodes and episode ends included
    # obs[t+1] is always what followed actions[t], even past an end
    np.testing.assert_array_equal(seq.obs[..., 0], starts[None] + np.arange(length + 1)[:, None])
    assert seq.mask is not None and seq.mask.shape == (length, 800) and seq.mask.dtype == np.float32
    for b, start in enumerate(starts):
        first_end = next((t for t in range(length) if start + t in ends), length)
        expected = (np.arange(length) <= first_end).astype(np.float32)
        np.testing.assert_array_equal(seq.mask[:, b], expected)
    assert buf.sample_sequences(8, length, np.random.default_rng(6)).mask is None  # the default: no mask


def test_truncate_last_marks_the_newest_transition_even_after_wrapping() -> None:
    """The newest slot is ``position - 1`` modulo the capacity; an empty buffer is left alone."""
    buffer = ReplayBuffer(3, (2,), 1)
    buffer.truncate_last()
    for k in range(4):  # the fourth overwrites slot 0
        buffer.add(np.full(2, k), np.zeros(1), 0.0, 0.0, False, False, np.full(2, k + 1))
    buffer.truncate_last()
    stored = buffer.stored()
    assert stored.truncated.tolist() == [True, False, False] and stored.obs[0].tolist() == [3, 3]
