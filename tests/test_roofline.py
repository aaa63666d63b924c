"""tools/roofline.py's ceilings: measured once per device, and only while the guard (the device
lock) is held, since measured beside other lanes' work they come out low and honest kernels get
flagged `excessive_speedup` (seen on the H100: fp32 GEMMs at 0.85x eager flagged at six lanes).
The measurement itself needs a GPU; here its two probes are replaced by recorders of the guard."""
import json
from contextlib import contextmanager

from tools import roofline


def test_ceilings_are_measured_once_under_the_guard_and_then_read_from_the_cache(kernelpilot_home, monkeypatch):
    held, probes = [], []

    @contextmanager
    def guard():
        held.append(True)
        yield
        held.pop()

    def probe(name, value):
        def measure(device):
            probes.append((name, bool(held)))
            return value
        return measure

    monkeypatch.setattr(roofline.torch.cuda, "get_device_name", lambda device: "Fake GPU")
    monkeypatch.setattr(roofline, "_copy_bandwidth", probe("copy", 3.0e12))
    monkeypatch.setattr(roofline, "_matmul_rate", probe("matmul", 5.0e13))
    assert roofline.ceilings("cuda:0", guard()) == (3.0e12, 5.0e13)
    assert probes == [("copy", True), ("matmul", True)]
    assert roofline.ceilings("cuda:0", guard()) == (3.0e12, 5.0e13) and len(probes) == 2     # cached
    cached = json.loads((roofline.cache_dir() / "ceilings.json").read_text())
    assert cached["Fake GPU"] == {"bytes_per_s": 3.0e12, "flops_per_s": 5.0e13}
