"""Summary and tables of the throughput benchmark's rows (benchmarks/throughput.py)."""

import numpy as np


def summarize(rows):
    """Median over repeats per (config, variant); speed-ups against the
    first variant of the same config, taken within each repeat."""
    groups = {}
    for row in rows:
        if "error" not in row:
            groups.setdefault((row["config"], row["variant"]), []).append(row)
    summary = []
    for (config, variant), group in groups.items():
        base = {r["repeat"]: r for r in groups.get(
            (config, group[0]["baseline"]), [])}
        paired = [(r, base[r["repeat"]]) for r in group if r["repeat"] in base]
        speedups = [r["full_images_per_s"] / b["full_images_per_s"]
                    for r, b in paired]
        # CPU seconds per step: what a loaded machine stretches least.
        cpu_speedups = [b["full_cpu_s_per_step"] / r["full_cpu_s_per_step"]
                        for r, b in paired]
        median = {k: float(np.median([r[k] for r in group])) for k in (
            "full_images_per_s", "full_ms_per_step", "bare_images_per_s",
            "bare_ms_per_step", "full_over_bare", "full_over_bare_cpu",
            "full_cpu_s_per_step", "peak_rss_mb")}
        median.update({k: float(np.median([r[k] for r in group]))
                       for k in ("memory_ms_per_step", "memory_share",
                                 "memory_share_cpu") if k in group[0]})
        summary.append(dict(group[0], **median, repeats=len(group),
                            speedup=float(np.median(speedups)) if speedups else None,
                            speedup_cpu=(float(np.median(cpu_speedups))
                                         if cpu_speedups else None)))
    return summary


def print_tables(throughput, memory):
    """Prints the throughput table (medians) and the memory table."""
    header = (f"{'config':<30}{'variant':<16}{'batch':>6}{'full img/s':>11}"
              f"{'full ms':>9}{'bare img/s':>11}{'full/bare':>10}"
              f"{'CPU f/b':>8}{'peak MB':>9}{'speed-up':>9}{'CPU s':>7}"
              f"{'CPU speed-up':>13}")
    if throughput:
        print(header)
        print("-" * len(header))
    for r in throughput:
        speedup, cpu_speedup = ("-" if x is None else f"{x:.2f}x"
                                for x in (r["speedup"], r["speedup_cpu"]))
        print(f"{r['config']:<30}{r['variant']:<16}{r['batch']:>6}"
              f"{r['full_images_per_s']:>11.1f}{r['full_ms_per_step']:>9.0f}"
              f"{r['bare_images_per_s']:>11.1f}{r['full_over_bare']:>10.2f}"
              f"{r['full_over_bare_cpu']:>8.2f}{r['peak_rss_mb']:>9.0f}"
              f"{speedup:>9}{r['full_cpu_s_per_step']:>7.2f}{cpu_speedup:>13}")
        if "memory_share" in r:
            print(f"  memory network (keys, EMA, enqueue): "
                  f"{r['memory_ms_per_step']:.0f} ms of the step, "
                  f"{100 * r['memory_share']:.0f}% wall, "
                  f"{100 * r['memory_share_cpu']:.0f}% CPU")
    if memory:
        print(f"\n{'memory (ResNet-18 32px)':<26}{'batch':>6}{'width':>7}"
              f"{'micro':>7}{'RSS before MB':>15}{'peak RSS MB':>13}"
              f"{'GPU peak MB':>13}{'step s':>8}")
        for m in memory:
            if "error" in m:
                print(f"{'':<26}{m['batch']:>6}{m['width']:>7}"
                      f"{m['micro_batch_size']:>7}  error: {m['error']}")
                continue
            gpu = f"{m['gpu_peak_mb']:.0f}" if "gpu_peak_mb" in m else "-"
            print(f"{'':<26}{m['batch']:>6}{m['width']:>7}"
                  f"{m['micro_batch_size']:>7}{m['rss_before_step_mb']:>15.0f}"
                  f"{m['peak_rss_mb']:>13.0f}{gpu:>13}{m['step_s']:>8.1f}")
