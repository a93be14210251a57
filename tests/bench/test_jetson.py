"""Jetson power and clock sampling: tegrastats lines as JetPack 4 and 6 print them; nothing made up elsewhere."""

from __future__ import annotations

import shutil

import pytest

from psf.bench.jetson import PowerSampler, parse_tegrastats, summarize

ORIN_JP6 = ("11-26-2026 10:00:00 RAM 2826/30698MB (lfb 6712x4MB) SWAP 0/15349MB (cached 0MB) CPU [2%@729,1%@729,off] "
            "EMC_FREQ 0%@2133 GR3D_FREQ 61%@[1300,1300] VIC_FREQ 729 APE 174 CPU@43.25C VDD_GPU_SOC 4762mW/4762mW "
            "VDD_CPU_CV 793mW/793mW VIN_SYS_5V0 3726mW/3726mW VDDQ_VDD2_1V8AO 202mW/202mW")
NANO_JP4 = "RAM 2049/3964MB (lfb 4x4MB) CPU [3%@1190,2%@1190] EMC_FREQ 0% GR3D_FREQ 45%@921 APE 25 PLL@38C POM_5V_IN 2914/2800 POM_5V_GPU 850/800"


def test_orin_line_sums_the_rails_and_reads_the_gpu_clock():
    sample = parse_tegrastats(ORIN_JP6)
    assert sample["rails_mw"] == {"VDD_GPU_SOC": 4762, "VDD_CPU_CV": 793, "VIN_SYS_5V0": 3726, "VDDQ_VDD2_1V8AO": 202}
    assert sample["total_mw"] == 4762 + 793 + 3726 + 202
    assert (sample["gpu_util"], sample["gpu_mhz"]) == (61, 1300)


def test_older_line_takes_the_input_rail_and_instant_values():
    sample = parse_tegrastats(NANO_JP4)
    assert sample["total_mw"] == 2914 and sample["rails_mw"]["POM_5V_GPU"] == 850
    assert "RAM" not in sample["rails_mw"] and (sample["gpu_util"], sample["gpu_mhz"]) == (45, 921)


def test_summary_means_and_empty():
    samples = [parse_tegrastats(NANO_JP4), parse_tegrastats(NANO_JP4.replace("2914/2800", "3086/2800"))]
    assert summarize(samples) == {"power_w": 3.0, "samples": 2, "gpu_util": 45.0, "gpu_mhz": 921}
    assert summarize([parse_tegrastats("RAM 1/2MB")]) is None


@pytest.mark.skipif(shutil.which("tegrastats") is not None, reason="this is a Jetson")
def test_sampler_reports_nothing_off_jetson():
    with PowerSampler(interval_ms=50) as power:
        pass
    assert power.result() is None
