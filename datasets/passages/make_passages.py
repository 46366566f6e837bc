"""Builds passages.txt: 50 King James passages (the first three verses of 50 chapters spread
evenly over datasets/kjv/heldout.txt.gz) followed by the public-domain passages of other.txt,
one passage per paragraph (blank-line separated, as `--text-file` reads them).
Run from the repository root: python3 datasets/passages/make_passages.py"""
import gzip
from pathlib import Path

here = Path(__file__).parent
chapters, cur = [], None
for line in gzip.open(here.parent / "kjv/heldout.txt.gz", "rt", encoding="utf-8"):
    line = line.strip()
    if not line:
        continue
    if line.split()[-1].isdigit() and len(line) < 30:
        cur = [line, []]
        chapters.append(cur)
    elif cur is not None:
        cur[1].append(line)
step = len(chapters) / 50
kjv = [chapters[int(i * step)] for i in range(50)]
out = [" ".join(verses[:3]) for _, verses in kjv]
other = [p.strip() for p in (here / "other.txt").read_text().split("\n\n") if p.strip()]
(here / "passages.txt").write_text("\n\n".join(out + other) + "\n")
(here / "kjv_chapters.txt").write_text("\n".join(title for title, _ in kjv) + "\n")
print(len(out), "KJV +", len(other), "other =", len(out) + len(other))
