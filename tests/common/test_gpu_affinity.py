import os
import sys
import types

import pytest

from common import gpu_affinity
from common.cli_errors import UserError
from common.gpu_affinity import (
    MODES,
    compute_affinities,
    compute_affinity,
    decode_cpu_mask,
    group_by_siblings,
    parse_cpu_list,
    read_thread_siblings,
    set_affinity,
)

# Fake node: 2 sockets x 4 physical cores x 2 hyperthreads, Linux numbering (siblings i and i+8).
# Socket 0: physical 0-3 (siblings 8-11); socket 1: physical 4-7 (siblings 12-15). GPUs 0,1 on socket 0; 2,3 on 1.
SIBLINGS = [(i, i + 8) for i in range(8)]
SOCKET0 = {0, 1, 2, 3, 8, 9, 10, 11}
SOCKET1 = {4, 5, 6, 7, 12, 13, 14, 15}
MASKS = [SOCKET0, SOCKET0, SOCKET1, SOCKET1]


def _words(cores, n=1):
    words = [0] * n
    for c in cores:
        words[c // 64] |= 1 << (c % 64)
    return words


# --------------------------------------------------------------------------- decoding

@pytest.mark.parametrize(
    "words, expected",
    [
        ([0b1111, 0], {0, 1, 2, 3}),
        ([0, 1], {64}),
        ([1 << 63, 0], {63}),
        ([0b101, 0b10], {0, 2, 65}),
        ([0, 0, 1 << 5], {133}),
        ([0, 0], set()),
    ],
)
def test_decode_cpu_mask_bit_order(words, expected):
    assert decode_cpu_mask(words) == expected


def test_decode_roundtrip_of_socket_masks():
    assert decode_cpu_mask(_words(SOCKET1, 2)) == SOCKET1
    assert decode_cpu_mask([0x0F0F]) == SOCKET0


@pytest.mark.parametrize(
    "text, expected",
    [("0,64\n", (0, 64)), ("0-1\n", (0, 1)), ("5\n", (5,)), ("0-3\n", (0, 1, 2, 3)), ("8,0", (0, 8)),
     ("0-1,4", (0, 1, 4))],
)
def test_parse_cpu_list(text, expected):
    assert parse_cpu_list(text) == expected


def test_read_thread_siblings_from_sysfs_tree(tmp_path):
    for cpu, text in {0: "0,64", 64: "0,64", 1: "1-2", 2: "1-2", 3: "3"}.items():
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "thread_siblings_list").write_text(text + "\n")
    (tmp_path / "cpufreq").mkdir()  # not a cpuN directory
    assert read_thread_siblings(tmp_path) == [(0, 64), (1, 2), (3,)]
    assert read_thread_siblings(tmp_path / "missing") == []


def test_group_by_siblings_orders_physical_cores_and_drops_siblings_outside_mask():
    assert group_by_siblings(SOCKET1, SIBLINGS) == [(4, 12), (5, 13), (6, 14), (7, 15)]
    assert group_by_siblings({0, 1, 9}, SIBLINGS) == [(0,), (1, 9)]
    assert group_by_siblings({3, 1, 2}, []) == [(1,), (2,), (3,)]


# --------------------------------------------------------------------------- every mode on the fake node

EXPECTED_ALL_LOGICAL = {
    "socket": [SOCKET0, SOCKET0, SOCKET1, SOCKET1],
    "socket_single": [{0, 8}, {0, 8}, {4, 12}, {4, 12}],
    "socket_single_unique": [{0, 8}, {1, 9}, {4, 12}, {5, 13}],
    "socket_unique_interleaved": [{0, 8, 2, 10}, {1, 9, 3, 11}, {4, 12, 6, 14}, {5, 13, 7, 15}],
    "socket_unique_contiguous": [{0, 8, 1, 9}, {2, 10, 3, 11}, {4, 12, 5, 13}, {6, 14, 7, 15}],
}
EXPECTED_SINGLE_LOGICAL = {
    "socket": [{0, 1, 2, 3}, {0, 1, 2, 3}, {4, 5, 6, 7}, {4, 5, 6, 7}],
    "socket_single": [{0}, {0}, {4}, {4}],
    "socket_single_unique": [{0}, {1}, {4}, {5}],
    "socket_unique_interleaved": [{0, 2}, {1, 3}, {4, 6}, {5, 7}],
    "socket_unique_contiguous": [{0, 1}, {2, 3}, {4, 5}, {6, 7}],
}


@pytest.mark.parametrize("mode", MODES[1:])
def test_every_mode_all_logical(mode):
    assert compute_affinities(mode, MASKS, SIBLINGS) == EXPECTED_ALL_LOGICAL[mode]
    for gpu in range(4):
        assert compute_affinity(mode, gpu, MASKS, SIBLINGS) == EXPECTED_ALL_LOGICAL[mode][gpu]


@pytest.mark.parametrize("mode", MODES[1:])
def test_every_mode_single_logical(mode):
    assert compute_affinities(mode, MASKS, SIBLINGS, cores="single_logical") == EXPECTED_SINGLE_LOGICAL[mode]


@pytest.mark.parametrize("mode", ["socket_single_unique", "socket_unique_interleaved", "socket_unique_contiguous"])
@pytest.mark.parametrize("cores", ["all_logical", "single_logical"])
def test_unique_modes_are_disjoint_and_stay_on_the_gpus_socket(mode, cores):
    sets = compute_affinities(mode, MASKS, SIBLINGS, cores=cores)
    for i in range(4):
        assert sets[i] and sets[i] <= MASKS[i]
        for j in range(i + 1, 4):
            assert sets[i].isdisjoint(sets[j]), (i, j)


# Socket 0 loses physical core 3 (and its sibling 11): 3 physical cores for 2 GPUs, 4 on socket 1.
ODD_SOCKET0 = SOCKET0 - {3, 11}
ODD_MASKS = [ODD_SOCKET0, ODD_SOCKET0, SOCKET1, SOCKET1]


@pytest.mark.parametrize(
    "mode, balanced, expected",
    [
        # balanced: min(3 // 2, 4 // 2) = 1 physical core per GPU everywhere, the rest dropped
        ("socket_unique_contiguous", True, [{0, 8}, {1, 9}, {4, 12}, {5, 13}]),
        ("socket_unique_interleaved", True, [{0, 8}, {1, 9}, {4, 12}, {5, 13}]),
        # unbalanced: every core used, the odd one goes to the socket's first GPU
        ("socket_unique_contiguous", False, [{0, 8, 1, 9}, {2, 10}, {4, 12, 5, 13}, {6, 14, 7, 15}]),
        ("socket_unique_interleaved", False, [{0, 8, 2, 10}, {1, 9}, {4, 12, 6, 14}, {5, 13, 7, 15}]),
    ],
)
def test_balanced_vs_unbalanced_with_odd_core_count(mode, balanced, expected):
    assert compute_affinities(mode, ODD_MASKS, SIBLINGS, balanced=balanced) == expected


def test_balanced_keeps_every_gpu_equal():
    sizes = {len(s) for s in compute_affinities("socket_unique_contiguous", ODD_MASKS, SIBLINGS, balanced=True)}
    assert sizes == {2}
    sizes = {len(s) for s in compute_affinities("socket_unique_contiguous", ODD_MASKS, SIBLINGS, balanced=False)}
    assert sizes == {2, 4}


def test_single_unique_runs_out_of_cores():
    masks = [{0, 1}] * 3  # two physical cores, no hyperthreads, three GPUs
    assert compute_affinities("socket_single_unique", masks, []) == [{0}, {1}, set()]
    assert compute_affinity("socket_single_unique", 1, masks, []) == {1}
    with pytest.raises(UserError, match="no CPU core for GPU 2"):
        compute_affinity("socket_single_unique", 2, masks, [])
    with pytest.raises(UserError, match="no CPU core"):
        compute_affinity("socket_unique_contiguous", 0, masks, [])  # balanced: 2 // 3 = 0 per GPU


def test_unique_modes_reject_partly_overlapping_masks():
    masks = [{0, 1, 2}, {2, 3}]
    with pytest.raises(UserError, match="identical or disjoint"):
        compute_affinities("socket_unique_contiguous", masks, [])
    assert compute_affinities("socket", masks, []) == [{0, 1, 2}, {2, 3}]


def test_unknown_mode_and_cores_list_the_choices():
    with pytest.raises(UserError, match="socket_unique_contiguous") as exc:
        compute_affinity("sockets", 0, MASKS, SIBLINGS)
    assert "sockets" in str(exc.value)
    with pytest.raises(UserError, match="all_logical, single_logical"):
        compute_affinity("socket", 0, MASKS, SIBLINGS, cores="physical")
    with pytest.raises(UserError, match="none, socket"):
        set_affinity("bogus")
    with pytest.raises(UserError, match="all_logical"):
        set_affinity("socket", cores="bogus")


def test_gpu_out_of_range():
    with pytest.raises(UserError, match="LOCAL_RANK"):
        compute_affinity("socket", 4, MASKS, SIBLINGS)


# --------------------------------------------------------------------------- set_affinity

class _Explodes(types.ModuleType):
    def __getattr__(self, name):
        raise AssertionError(f"pynvml.{name} touched for mode none")


def test_mode_none_touches_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _Explodes("pynvml"))
    monkeypatch.setattr(os, "sched_setaffinity", lambda *a: pytest.fail("affinity set for mode none"))
    assert set_affinity("none") is None
    assert set_affinity() is None


def test_mode_none_does_not_import_pynvml(monkeypatch):
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    assert set_affinity("none", gpu_id=3, nproc_per_node=8) is None
    assert "pynvml" not in sys.modules


def test_missing_pynvml_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(UserError) as exc:
        set_affinity("socket", gpu_id=0, nproc_per_node=1)
    msg = str(exc.value)
    assert "--gpu-affinity socket needs NVML" in msg
    assert "pip install nvidia-ml-py" in msg
    assert "--gpu-affinity none" in msg


def _fake_pynvml(masks, calls, init_error=None):
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def nvmlInit():
        calls.append("init")
        if init_error:
            raise NVMLError(init_error)

    def get_handle(i):
        assert 0 <= i < len(masks)
        return ("handle", i)

    def get_handle_by_uuid(uuid):
        return ("handle", int(uuid.rsplit("-", 1)[1]))

    def get_cpu_affinity(handle, n):
        calls.append(("affinity", handle[1], n))
        return _words(masks[handle[1]], n)

    mod.NVMLError = NVMLError
    mod.nvmlInit = nvmlInit
    mod.nvmlShutdown = lambda: calls.append("shutdown")
    mod.nvmlDeviceGetCount = lambda: len(masks)
    mod.nvmlDeviceGetHandleByIndex = get_handle
    mod.nvmlDeviceGetHandleByUUID = get_handle_by_uuid
    mod.nvmlDeviceGetCpuAffinity = get_cpu_affinity
    return mod


@pytest.fixture
def node(monkeypatch):
    """Fake pynvml for the 4-GPU node, sibling reader, and a recorded sched_setaffinity."""
    calls, applied = [], []
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(MASKS, calls))
    monkeypatch.setattr(gpu_affinity, "read_thread_siblings", lambda *a: SIBLINGS)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(130)))
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: applied.append((pid, set(cores))))
    monkeypatch.setattr(os, "cpu_count", lambda: 130)
    for var in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    return types.SimpleNamespace(calls=calls, applied=applied, monkeypatch=monkeypatch)


def test_set_affinity_applies_the_computed_set(node):
    node.monkeypatch.setenv("LOCAL_RANK", "3")
    result = set_affinity("socket_unique_contiguous")
    assert result == {6, 14, 7, 15}
    assert node.applied == [(0, {6, 14, 7, 15})]
    # nproc_per_node fell back to the NVML count (4); ceil(130 / 64) = 3 words per mask; NVML shut down
    assert [c for c in node.calls if c[0] == "affinity"] == [("affinity", i, 3) for i in range(4)]
    assert node.calls[0] == "init" and node.calls[-1] == "shutdown"


def test_set_affinity_explicit_arguments_and_cores(node):
    assert set_affinity("socket_single_unique", gpu_id=1, nproc_per_node=4, cores="single_logical") == {1}
    assert set_affinity("socket", gpu_id=2) == SOCKET1
    assert node.applied == [(0, {1}), (0, SOCKET1)]


def test_set_affinity_local_world_size_limits_the_gpus(node):
    # Two processes, both on socket 0: they split socket 0 between them.
    node.monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    node.monkeypatch.setenv("LOCAL_RANK", "1")
    assert set_affinity("socket_unique_interleaved") == {1, 9, 3, 11}
    assert len([c for c in node.calls if c[0] == "affinity"]) == 2


def test_set_affinity_maps_cuda_visible_devices(node):
    node.monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    node.monkeypatch.setenv("LOCAL_RANK", "0")
    assert set_affinity("socket_unique_contiguous") == {4, 12, 5, 13}
    node.monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-3")
    assert set_affinity("socket") == SOCKET1


def test_set_affinity_skips_cores_the_process_may_not_use(node):
    node.monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)) - {0, 8})
    assert set_affinity("socket_single", gpu_id=0) == {1, 9}


def test_set_affinity_rank_outside_world(node):
    with pytest.raises(UserError, match="LOCAL_RANK"):
        set_affinity("socket", gpu_id=2, nproc_per_node=2)
    with pytest.raises(UserError, match="LOCAL_WORLD_SIZE"):
        set_affinity("socket", gpu_id=0, nproc_per_node=5)
    assert node.applied == []


def test_nvml_init_failure_is_a_user_error(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(MASKS, calls, init_error="Driver Not Loaded"))
    monkeypatch.setattr(os, "sched_setaffinity", lambda *a: pytest.fail("affinity set without NVML"))
    with pytest.raises(UserError, match="could not start NVML .*Driver Not Loaded.*--gpu-affinity none"):
        set_affinity("socket", gpu_id=0, nproc_per_node=1)
