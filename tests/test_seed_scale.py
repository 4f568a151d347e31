"""The seed benchmark (examples/benchmarks/seed_scale.py, issue 17) runs end to end at a tiny
size, each measurement in its own process, and writes its section of RESULTS.md in place."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "examples" / "benchmarks"))
import seed_scale  # noqa: E402


def test_tiny_run_writes_its_section(tmp_path):
    out = tmp_path / "RESULTS.md"
    hand_built = seed_scale.HEADINGS["hand-built"]
    out.write_text("# Results\n\n## Before\n\nkept\n\n" + seed_scale.HEADING + "\n\nold\n\n"
                   f"{hand_built}\n\nthe SNNs' own\n\n## After\n\nalso kept\n")
    saved = tmp_path / "seed.json"
    results = seed_scale.main(["--nets", "mobilenet_v2", "--size", "32", "--timesteps", "2",
                               "--calibration", "2", "--threads", "1", "--targets", "loihi",
                               "--out", str(out), "--json", str(saved), "--note", "provisional"])
    row = results["rows"]["mobilenet_v2"]
    conv, mapped, sim = row["_convert"], row["_map loihi"], row["_simulate"]
    assert conv["samples"] == 2 and conv["membrane_calibration"]
    assert conv["seconds"] > 0 and conv["ratio"] == conv["seconds"] / conv["ann_pass_s"]
    assert mapped["cores"] > 0 and mapped["chips"] >= 1 and mapped["seconds"] > 0
    assert sim["bound_s"] > 0 and 0 < sim["spike_rate"] < 1
    for r in (conv, mapped, sim):  # each process's own high-water mark: torch alone is > 0.1 GB
        assert 0.1 < r["peak_gb"] < 8
    text = out.read_text()
    assert text.count(seed_scale.HEADING) == 1 and "old" not in text
    assert "kept" in text and "also kept" in text and f"{hand_built}\n\nthe SNNs' own" in text
    assert text.index("## Before") < text.index(seed_scale.HEADING) < text.index("## After")
    assert "| mobilenet_v2 |" in text and "map loihi (s)" in text and "/ dense bound" in text
    assert "--calibration 2" in text and "thread(s)" in text and "provisional" in text
    assert json.loads(saved.read_text())["rows"]["mobilenet_v2"]["_map loihi"] == mapped


def test_peak_is_this_process_high_water_mark():
    import numpy as np
    block = np.ones(2**28 // 8)  # 256 MiB, touched
    peak = seed_scale.peak_gb()
    assert peak > 0.25
    del block
    if seed_scale.reset_peak():  # Linux: the mark drops to what is resident now
        assert seed_scale.peak_gb() < peak - 0.2
