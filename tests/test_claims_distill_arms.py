"""benchmarks/claims_arms.py: which seeds run which distillation settings,
the memory's teachers' students and the wider teacher's student."""

from tests import harness

arms = harness.benchmark_module("claims_arms")
report = harness.benchmark_module("claims_report")


def test_all_seeds_settings_run_on_every_seed():
    settings = ("long", "long_noisy", "long_t2")
    names = set(name for name, _ in arms.all_runs("/o", (0, 1, 2), "cpu", settings))
    for fraction in (1, 10):
        assert {f"distill{fraction}_long_noisy_s{s}" for s in (0, 1, 2)} <= names
        assert f"distill{fraction}_long_t2_s2" not in names


def test_the_memorys_teacher_distils_its_own_students():
    settings = ("long", "long_t2", "long_noisy")
    runs = dict(arms.run_list("/o", 2, "cpu", settings))
    teacher = runs["ft10_pre3_mem_l1_s2"]
    assert "--checkpoint=/o/pre3_mem_s2" in teacher and "--label_fraction=0.1" in teacher
    for setting in ("long", "long_noisy"):  # The first and the all-seeds one.
        for fraction in (1, 10):
            flags = runs[f"distill{fraction}_mem_{setting}_s2"]
            assert f"--teacher=/o/ft{fraction}_pre3_mem_l1_s2" in flags
            assert "--checkpoint=/o/pre3_mem_s2" in flags
            # The same recipe as pre3's student.
            assert flags[:-2] == runs[f"distill{fraction}_{setting}_s2"][:-2]
    assert "distill10_mem_long_t2_s2" not in runs and "distill1_mem_long_t2_s2" not in runs
    # Each student is reported against its own teacher, paired by seed.
    results = {f"{name}_s{s}": {"top1": top1} for s in (0, 1) for name, top1 in (
        ("ft10_pre3_mem_l1", 0.86), ("distill10_mem_long", 0.87), ("ft10_pre3_l1", 0.80))}
    lines = report.verdict_rows(results, (0, 1), report.distill_verdicts(settings))
    row = next(line for line in lines.splitlines()
               if line.startswith("| long, 10% labels, pretrained with the memory"))
    assert "+1.0 (+1.0, +1.0)" in row and row.endswith("| holds |")


def test_comparison_distillation_settings_run_on_the_first_two_seeds():
    settings = ("long", "long_t2", "short")
    names = [name for name, _ in arms.all_runs("/o", (0, 1, 2), "cpu", settings)]
    assert len(names) == len(set(names))
    for fraction in (1, 10):
        assert {f"distill{fraction}_long_s{s}" for s in (0, 1, 2)} <= set(names)
        for setting in ("long_t2", "short"):
            assert {f"distill{fraction}_{setting}_s{s}" for s in (0, 1)} <= set(names)
            assert f"distill{fraction}_{setting}_s2" not in names
    # Everything else runs for all three seeds: only the 8 comparison runs are missing.
    full = [name for name, _ in arms.run_list("/o", 2, "cpu", settings)]
    assert sorted(set(full) - set(names)) == sorted(
        f"distill{f}_{s}_s2" for f in (1, 10) for s in ("long_t2", "short"))
    # Seed 2's runs keep their order among themselves.
    assert [n for n in names if n.endswith("_s2")] == [n for n in full if n in names]


def test_the_wider_teacher_teaches_a_quarter_width_noised_student():
    runs = dict(arms.run_list("/o", 1, "cpu", ("long",)))
    flags = runs["distill1_from_wide_long_noisy_s1"]
    assert "--teacher=/o/ft1_pre3_wide_l1_s1" in flags
    assert "--checkpoint=/o/pre3_mem_s1" in flags
    assert "--width_multiplier=0.25" in flags and "--width_multiplier=0.5" not in flags
    # The noised recipe of long_noisy, whatever --distill_settings selects.
    assert "--distill_teacher_input=whole_image" in flags and "--crop_min_area=0.35" in flags
    assert "--width_multiplier=0.5" in runs["ft1_pre3_wide_l1_s1"]
    names = [name for name, _ in arms.run_list("/o", 1, "cpu", ("long",))]
    assert names.index("ft1_pre3_wide_l1_s1") < names.index("distill1_from_wide_long_noisy_s1")
    # Its verdict compares it with the 1/4 width fine-tuned on the same 600.
    results = {f"{name}_s{s}": {"top1": top1} for s in (0, 1) for name, top1 in (
        ("ft1_pre3_l1", 0.83), ("ft1_pre3_wide_l1", 0.84), ("distill1_from_wide_long_noisy", 0.86))}
    row = next(line for line in report.verdict_rows(results, (0, 1)).splitlines()
               if "noised student of the 1/2 width teacher" in line)
    assert "+3.0 (+3.0, +3.0)" in row and row.endswith("| holds |")


def test_the_wider_teacher_teaches_its_own_width_too():
    runs = arms.run_list("/o", 1, "cpu", ("long",))
    flags = dict(runs)["distill1_wide_long_noisy_s1"]
    assert "--teacher=/o/ft1_pre3_wide_l1_s1" in flags
    assert "--checkpoint=/o/pre3_wide_s1" in flags
    assert "--width_multiplier=0.5" in flags and "--width_multiplier=0.25" not in flags
    assert "--distill_teacher_input=whole_image" in flags and "--crop_min_area=0.35" in flags
    # Last: the earlier steps keep their order, so a resumed suite is unchanged.
    assert runs[-1][0] == "distill1_wide_long_noisy_s1"
    # Its verdict compares it with its own teacher, not the 1/4 width.
    results = {f"{name}_s{s}": {"top1": top1} for s in (0, 1) for name, top1 in (
        ("ft1_pre3_l1", 0.80), ("ft1_pre3_wide_l1", 0.84), ("distill1_wide_long_noisy", 0.86))}
    row = next(line for line in report.verdict_rows(results, (0, 1)).splitlines()
               if "1/2 width noised student (long_noisy) > its teacher" in line)
    assert "+2.0 (+2.0, +2.0)" in row and row.endswith("| holds |")
