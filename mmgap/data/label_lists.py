"""Label lists, read one way for every dataset: list files of (clip, label) rows, class-list files, and the
check that stops a list whose integer labels are counted from 1.

Text is read as UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8"), with `,`, `;` or tab as
the delimiter (taken from the first line). A list file is one of:
- `clip,label` rows (a header whose last field is `label` is skipped), or `ytid_start_end,10,label`
  (Kinetics-Sounds lists: the first field is the clip, the last the label);
- Kinetics' own annotation CSV, header `label,youtube_id,time_start,time_end,split`: the clip is
  `<youtube_id>_<time_start:06d>_<time_end:06d>` (the downloaders' file name), the label a class name; the
  `split` column is ignored (the file's name decides its split).
A class-list file (`classes.txt`) has one class a line, either `name` (line k is index k, from 0) or
`index name` / `index,name` (the indices as your lists use them, from 0 or from 1).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from mmgap.data.manifest import DataError

KINETICS_CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class ListedLabel:
    """One row of a list file: the clip as the list names it, its raw label, and where it was written."""

    clip: str
    label: str
    line: int                         # 1-based line number in the file
    source: str                       # the file's name
    problem: str = ""                 # non-empty: the row is unusable, and this says why

    @property
    def where(self) -> str:
        """`trainSet.txt row 3`: where the row was written."""
        return f"{self.source} row {self.line}"


@dataclass
class LabelList:
    """The rows of one list file and its format (`rows` or `kinetics_csv`)."""

    path: Path
    rows: list[ListedLabel] = field(default_factory=list)
    kind: str = "rows"


def read_text(path: Path) -> str:
    """A UTF-8 text file without its byte-order mark, or a DataError saying how to re-save it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return fh.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r}); save it "
                        "as UTF-8 (in Excel: 'CSV UTF-8')") from e


def read_text_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank CSV rows of a UTF-8 text file (a byte-order mark is dropped)."""
    text = read_text(path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delim = next((d for d in (",", ";", "\t") if d in first), ",")
    out = []
    reader = csv.reader(text.splitlines(), delimiter=delim)
    for rec in reader:
        if rec and any(f.strip() for f in rec):
            out.append((reader.line_num, [f.strip() for f in rec]))
    return out


def read_label_list(path: Path) -> LabelList:
    """The rows of a list file in any of the formats of the module docstring."""
    rows = read_text_rows(path)
    out = LabelList(path)
    if not rows:
        return out
    header = [f.lower() for f in rows[0][1]]
    if "youtube_id" in header:
        return _kinetics_csv(path, header, rows[1:])
    for k, (line, rec) in enumerate(rows):
        if len(rec) < 2:
            out.rows.append(ListedLabel(rec[0], "", line, path.name, f"bad row {line} of {path.name}: expected "
                                        "`clip,label` or `ytid_start_end,10,label`"))
        elif k == 0 and rec[-1].lower() == "label":
            continue
        else:
            out.rows.append(ListedLabel(rec[0], rec[-1], line, path.name))
    return out


def _kinetics_csv(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> LabelList:
    """Kinetics' annotation CSV (`label,youtube_id,time_start,time_end,split`), or a DataError saying why not."""
    missing = [c for c in KINETICS_CSV_COLUMNS if c not in header]
    if missing:
        why = (" (an unlabelled test list cannot train or evaluate; use a labelled one)" if missing == ["label"]
               else "")
        raise DataError(f"{path}: a Kinetics annotation CSV (it has a youtube_id column) but without column(s) "
                        f"{missing}{why}; expected the header {','.join(KINETICS_CSV_COLUMNS)},split")
    col = {c: header.index(c) for c in KINETICS_CSV_COLUMNS}
    out = LabelList(path, kind="kinetics_csv")
    for line, rec in rows:
        if len(rec) < len(header):
            out.rows.append(ListedLabel(rec[0], "", line, path.name,
                                        f"bad row {line} of {path.name}: {len(rec)} fields, header has {len(header)}"))
            continue
        ytid = rec[col["youtube_id"]]
        try:
            t0, t1 = (int(round(float(rec[col[c]]))) for c in ("time_start", "time_end"))
        except ValueError:
            out.rows.append(ListedLabel(ytid, "", line, path.name, f"bad row {line} of {path.name}: time_start / "
                                        f"time_end {rec[col['time_start']]!r}, {rec[col['time_end']]!r} are not "
                                        "numbers"))
            continue
        out.rows.append(ListedLabel(f"{ytid}_{t0:06d}_{t1:06d}", rec[col["label"]], line, path.name))
    return out


def _norm(name: str) -> str:
    return name.strip().replace(" ", "_").lower()


@dataclass(frozen=True)
class ClassList:
    """Class names in index order; `base` is the integer a list uses for the first class."""

    names: list[str]
    base: int = 0
    explicit: bool = False            # the indices were written in the file (the base is known, not assumed)
    source: str = "the built-in class list"

    def lookup(self, raw: str) -> int | None:
        """The class index of a label given as a name (exact, else ignoring case and `_` vs space) or as an
        index counted from `base`; None when it is neither."""
        raw = raw.strip()
        if raw.isdigit():
            k = int(raw) - self.base
            return k if 0 <= k < len(self.names) else None
        if raw in self.names:
            return self.names.index(raw)
        norm = [_norm(n) for n in self.names]
        return norm.index(_norm(raw)) if _norm(raw) in norm else None


def read_class_list(path: Path) -> ClassList:
    """A class-list file: lines `name` (indexed from 0 by line) or `index name` / `index,name` (your indices)."""
    lines = [ln.strip() for ln in read_text(path).splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise DataError(f"{path}: empty class list; write one class name a line")
    split = [_index_and_name(ln) for ln in lines]
    if all(idx is not None for idx, _ in split):
        order = sorted(split)
        idx = [i for i, _ in order]
        if idx != list(range(idx[0], idx[0] + len(idx))) or idx[0] not in (0, 1):
            raise DataError(f"{path}: class indices {idx} must run 0..{len(idx) - 1} or 1..{len(idx)} without "
                            "gaps or repeats")
        names, base, explicit = [n for _, n in order], idx[0], True
    else:
        names, base, explicit = lines, 0, False
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{path}: class name(s) {dup} listed more than once")
    return ClassList(names, base, explicit, path.name)


def _index_and_name(line: str) -> tuple[int | None, str]:
    """(index, name) of `3 name`, `3,name` or `3<TAB>name`; (None, line) for a bare name."""
    head = line.split(None, 1)[0].split(",", 1)[0]
    rest = line[len(head):].lstrip(" \t,").strip()
    return (int(head), rest) if head.isdigit() and rest else (None, line)


def check_index_base(lists: list[LabelList], classes: ClassList, dataset: str, where: Path) -> None:
    """Stop, with the fix, when integer labels look counted from 1: no 0 anywhere and the class count used."""
    if classes.explicit:
        return
    ints = {int(r.label) for lst in lists for r in lst.rows if r.label.isdigit()}
    n = len(classes.names)
    if ints and 0 not in ints and n in ints:
        files = ", ".join(lst.path.name for lst in lists)
        raise DataError(
            f"{dataset}: the integer labels in {files} run {min(ints)}..{max(ints)} with no 0: the lists count "
            f"classes from 1, but {classes.source} is indexed from 0 (0 = {classes.names[0]!r}, "
            f"{n - 1} = {classes.names[-1]!r}), so every label would shift by one class. Subtract 1 from the "
            f"labels, write class names instead, or put a classes.txt in {where} with lines `1 {classes.names[0]}` "
            f"... `{n} {classes.names[-1]}` (your index, then the name); see data/README.md.")
