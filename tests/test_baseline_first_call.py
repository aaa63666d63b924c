"""A baseline's first call runs before the device lock is taken (tools/baselines.py): torch.compile
compiles there, so only the timed loop holds the lock; a first call that fails is a note and takes
no lock. A real CPU worker and a real lock file; the timed loop itself is a GPU's (tests/test_gpu.py
times baselines for real), so here it only records that it ran under the lock."""
import torch

import tools.baselines as baselines_module
from tests.conftest import PROBLEMS, TEST_LIMITS
from tests.test_reward_protocol import RecordingLock
from tools.baselines import BaselineStore
from tools.device import detect
from tools.problems import load_problem
from tools.records import EvalStatus, TimingStats
from tools.reference import Reference
from tools.sandbox.shm import Exchange
from tools.timing import Timed, TimingConfig



def store_with_events(cpu_sandbox, tmp_path, monkeypatch) -> tuple[BaselineStore, list]:
    events: list = []
    lock = RecordingLock(tmp_path / "gpu.lock", events)
    store = BaselineStore(cpu_sandbox, detect(force_cpu=True), Exchange(torch.device("cpu")), TimingConfig(),
                          TEST_LIMITS, device_lock=lock)
    first = store.first_call
    monkeypatch.setattr(store, "first_call", lambda worker, reference: (events.append("first call"),
                                                                          first(worker, reference))[1])

    def timed(*args, **kwargs):
        events.append(("timed", lock.held))
        return Timed(EvalStatus.CORRECT, stats=TimingStats.from_samples([0.1] * 20, [0.1] * 20, 0.01))
    monkeypatch.setattr(baselines_module.timing, "time_candidate", timed)
    return store, events


def test_the_first_call_runs_outside_the_lock_and_only_the_timing_holds_it(cpu_sandbox, tmp_path, monkeypatch):
    store, events = store_with_events(cpu_sandbox, tmp_path, monkeypatch)
    reference = Reference(load_problem(PROBLEMS / "04_softmax_rows.py", size="small"), torch.device("cpu"))
    notes: list[str] = []
    assert store._time(reference, torch_compile=False, notes=notes, alone=True) is not None and not notes
    assert events == ["first call", "lock", ("timed", True)]


def test_a_first_call_that_fails_is_a_note_and_takes_no_lock(cpu_sandbox, tmp_path, monkeypatch):
    store, events = store_with_events(cpu_sandbox, tmp_path, monkeypatch)
    source = (PROBLEMS / "04_softmax_rows.py").read_text().replace("    def forward(self, x):",
                                                                   "    def forward(self, x):\n        raise ValueError('no')")
    broken = tmp_path / "broken.py"
    broken.write_text(source)
    reference = Reference(load_problem(broken, size="small"), torch.device("cpu"))
    notes: list[str] = []
    reference.run = lambda inputs, copy=True: ("tensor", [torch.zeros(1)])     # the trusted side's own run is not the point
    assert store._time(reference, torch_compile=False, notes=notes, alone=True) is None
    assert events == ["first call"] and notes and "eager baseline failed on its first call" in notes[0]
