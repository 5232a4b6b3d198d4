"""The pure core: mapping, watermark, dedup, gap planning, pacing, record shapes (no I/O)."""
