"""Power and clocks on Jetson while psf-bench times a backend: jetson-stats (jtop) or `tegrastats`.

Absent both (any non-Jetson host) the sampler reports nothing; it never guesses.
tegrastats prints one line per interval, e.g.
    ... GR3D_FREQ 61%@[1300] ... VDD_GPU_SOC 4762mW/4762mW VDD_CPU_CV 793mW/793mW VIN_SYS_5V0 3726mW/3726mW
(JetPack 6, AGX Orin); JetPack 4 boards print POM_5V_IN 3000/3000 without units. Each rail is a
current/average pair; the first is the instant reading.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

RAIL = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
GPU_FREQ = re.compile(r"GR3D_FREQ (\d+)%(?:@\[?(\d+)\]?)?")
# The module's input rail where a board has one (Orin Nano/NX: VDD_IN; JetPack 4: POM_5V_IN); AGX Orin
# has none, and its total is the sum of its rails, as jetson-stats computes it.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


def parse_tegrastats(line: str) -> dict:
    """One tegrastats line -> {"rails_mw": {name: instant mW}, "total_mw", "gpu_util", "gpu_mhz"} (what it has)."""
    rails = {name: int(now) for name, now, _ in RAIL.findall(line)}
    out: dict = {"rails_mw": rails}
    total = next((rails[r] for r in TOTAL_RAILS if r in rails), None)
    out["total_mw"] = total if total is not None else (sum(rails.values()) or None)
    match = GPU_FREQ.search(line)
    if match:
        out["gpu_util"] = int(match.group(1))
        out["gpu_mhz"] = int(match.group(2)) if match.group(2) else None
    return out


def summarize(samples: list[dict]) -> dict | None:
    """Mean power (W), mean GPU utilisation and clock over the samples taken while a stage ran."""
    powers = [s["total_mw"] for s in samples if s.get("total_mw")]
    if not powers:
        return None
    util = [s["gpu_util"] for s in samples if s.get("gpu_util") is not None]
    mhz = [s["gpu_mhz"] for s in samples if s.get("gpu_mhz")]
    return {"power_w": round(sum(powers) / len(powers) / 1000, 2), "samples": len(powers),
            "gpu_util": round(sum(util) / len(util), 1) if util else None,
            "gpu_mhz": round(sum(mhz) / len(mhz)) if mhz else None}


class PowerSampler:
    """Context manager: samples power and GPU clock in the background; .result() after exit."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = None
        self._proc = None
        self.source = _source()

    def __enter__(self) -> "PowerSampler":
        if self.source == "tegrastats":
            self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read_tegrastats, daemon=True)
        elif self.source == "jtop":
            self._thread = threading.Thread(target=self._read_jtop, daemon=True)
        if self._thread:
            self._thread.start()
        return self

    def _read_tegrastats(self) -> None:
        for line in self._proc.stdout:
            if self._stop.is_set():
                break
            self.samples.append(parse_tegrastats(line))

    def _read_jtop(self) -> None:
        from jtop import jtop

        with jtop(interval=self.interval_ms / 1000) as jetson:
            while jetson.ok() and not self._stop.is_set():
                power = jetson.power.get("tot", {}).get("power")
                gpu = jetson.gpu.get("gpu", {}) if isinstance(jetson.gpu, dict) else {}
                freq = gpu.get("freq", {}).get("cur") if isinstance(gpu.get("freq"), dict) else None
                self.samples.append({"total_mw": power, "gpu_util": gpu.get("status", {}).get("load"),
                                     "gpu_mhz": round(freq / 1000) if freq else None})

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def result(self) -> dict | None:
        summary = summarize(self.samples)
        return {**summary, "source": self.source} if summary else None


def _source() -> str | None:
    try:
        import jtop  # noqa: F401
        return "jtop"
    except ImportError:
        pass
    return "tegrastats" if shutil.which("tegrastats") else None
