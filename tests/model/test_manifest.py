"""Training manifests: loading CSV/JSONL, reporting every bad row, grouped stratified splits."""

from __future__ import annotations

import gzip
import json
import pickle
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

import pytest

from model.errors import ModelPackageError
from model.training.manifest import (
    SNOMED,
    Manifest,
    ManifestError,
    ManifestRow,
    RowProblem,
    assign_splits,
    load_manifest,
    write_manifest,
)

SR = f"{SNOMED}|426783006"
AF = f"{SNOMED}|164889003"
TACHY = f"{SNOMED}|427084000"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A manifest folder with a few input files next to it."""
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "a.png").write_bytes(b"png")
    (tmp_path / "slides" / "b.png").write_bytes(b"png")
    (tmp_path / "ecg").mkdir()
    (tmp_path / "ecg" / "100.hea").write_text("100 2 360 650000\n")
    (tmp_path / "ecg" / "r1.mat").write_bytes(b"mat")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "n1.txt").write_text("Palpitations.")
    return tmp_path


GOOD_CSV = (
    "case_id,group_id,split,images,ecg,ecg_start_s,ecg_duration_s,note,note_text,labels,"
    "unknown_labels,vitals,vital:age_years,head:specialty,composite,synthetic,sources\n"
    "c1,p1,train,slides/a.png;slides/b.png,ecg/100,30,10,notes/n1.txt,,snomed:426783006,"
    'snomed:164889003,"{""heart_rate_bpm"": 72}",64,Cardiology,yes,0,"{""ecg"": ""MIT-BIH 100""}"\n'
    f'c2,p2,,,ecg/r1.mat,,,,"Chest pain,\nshort of breath.",{AF},,,,,no,false,\n'
)

GOOD_JSONL_ROWS = [
    {
        "case_id": "c1",
        "group_id": "p1",
        "split": "train",
        "images": ["slides/a.png", "slides/b.png"],
        "ecg": "ecg/100",
        "ecg_start_s": 30,
        "ecg_duration_s": 10.0,
        "note": "notes/n1.txt",
        "labels": ["snomed:426783006"],
        "unknown_labels": [AF.replace(SNOMED, "sct")],
        "vitals": {"heart_rate_bpm": 72, "age_years": "64"},
        "heads": {"specialty": "Cardiology"},
        "composite": True,
        "synthetic": False,
        "sources": {"ecg": "MIT-BIH 100"},
    },
    {
        "case_id": "c2",
        "group_id": "p2",
        "split": None,
        "ecg": "ecg/r1.mat",
        "note_text": "Chest pain,\nshort of breath.",
        "labels": [AF],
        "composite": "no",
        "synthetic": 0,
    },
]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs: object) -> tuple[RowProblem, ...]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def only_problem(path: Path, **kwargs: object) -> RowProblem:
    problems = problems_of(path, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def csv_manifest(folder: Path, header: str, *lines: str) -> Path:
    path = folder / "m.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Good manifests


def check_good_rows(manifest: Manifest, folder: Path) -> None:
    first, second = manifest.rows
    assert first.line == 2 or first.line == 1
    assert first.case_id == "c1" and first.group_id == "p1" and first.split == "train"
    assert first.images == (folder / "slides" / "a.png", folder / "slides" / "b.png")
    assert first.ecg == folder / "ecg" / "100"  # WFDB record named without .hea
    assert (first.ecg_start_s, first.ecg_duration_s) == (30.0, 10.0)
    assert first.note_path == folder / "notes" / "n1.txt" and first.note_text is None
    assert first.vitals == {"heart_rate_bpm": 72.0, "age_years": 64.0}
    assert first.labels == (SR,) and first.unknown == (AF,)
    assert first.heads == {"specialty": "Cardiology"}
    assert first.composite is True and first.synthetic is False
    assert first.sources == {"ecg": "MIT-BIH 100"}
    assert second.case_id == "c2" and second.split is None and second.images == ()
    assert second.ecg == folder / "ecg" / "r1.mat" and second.note_path is None
    assert second.note_text == "Chest pain,\nshort of breath."
    assert second.labels == (AF,) and second.unknown == () and second.vitals == {}
    assert second.composite is False and second.synthetic is False
    assert manifest.label_names() == tuple(sorted((SR, AF)))
    assert manifest.head_classes() == {"specialty": ("Cardiology",)}


def test_good_csv_and_jsonl_load_the_same_rows(folder: Path) -> None:
    (folder / "m.csv").write_text(GOOD_CSV, encoding="utf-8")
    from_csv = load_manifest(folder / "m.csv")
    from_jsonl = load_manifest(write_jsonl(folder / "m.jsonl", list(GOOD_JSONL_ROWS)))
    check_good_rows(from_csv, folder)
    check_good_rows(from_jsonl, folder)
    assert [r.line for r in from_csv.rows] == [2, 3]
    assert [r.line for r in from_jsonl.rows] == [1, 2]
    strip = [
        {k: v for k, v in vars(r).items() if k != "line"}
        for r in (*from_csv.rows, *from_jsonl.rows)
    ]
    assert strip[:2] == strip[2:]


def test_gzipped_manifests_and_ndjson_load(folder: Path) -> None:
    (folder / "m.csv.gz").write_bytes(gzip.compress(GOOD_CSV.encode()))
    check_good_rows(load_manifest(folder / "m.csv.gz"), folder)
    text = "".join(json.dumps(row) + "\n" for row in GOOD_JSONL_ROWS)
    (folder / "m.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    check_good_rows(load_manifest(folder / "m.jsonl.gz"), folder)
    (folder / "m.ndjson").write_text("\n" + text + "\n\n", encoding="utf-8")
    assert [r.line for r in load_manifest(folder / "m.ndjson").rows] == [2, 3]


def test_known_labels_and_heads_accept_what_the_model_has(folder: Path) -> None:
    (folder / "m.csv").write_text(GOOD_CSV, encoding="utf-8")
    manifest = load_manifest(
        folder / "m.csv",
        known_labels=["snomed:426783006", AF],
        known_heads={"specialty": ["Cardiology", "Neurology"]},
    )
    assert len(manifest.rows) == 2


def test_missing_files_pass_when_not_checked(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "m.jsonl", [{"case_id": "c", "group_id": "g", "images": ["x/missing.png"]}]
    )
    (row,) = load_manifest(path, check_files=False).rows
    assert row.images == (tmp_path / "x" / "missing.png",)


# ---------------------------------------------------------------------------------------------
# Every problem, with its line, case and column


HEADER = "case_id,group_id,split,ecg,ecg_start_s,ecg_duration_s,note_text,labels,unknown_labels"


@pytest.mark.parametrize(
    ("line", "column", "case_id", "words"),
    [
        (",p1,,,,,hello,,", "case_id", None, "needs a case_id"),
        ("c9,,,,,,hello,,", "group_id", "c9", "needs a group_id"),
        ("c9,p1,training,,,,hello,,", "split", "c9", "unknown split 'training'"),
        ("c9,p1,,,,,,,", "images", "c9", "no input"),
        ("c9,p1,,ecg/nothere.mat,,,,,", "ecg", "c9", "not found"),
        ("c9,p1,,ecg,,,,,", "ecg", "c9", "is a folder"),
        ("c9,p1,,ecg/r1.mat,-1,,,,", "ecg_start_s", "c9", "before 0 s"),
        ("c9,p1,,ecg/r1.mat,,0,,,", "ecg_duration_s", "c9", "> 0 s"),
        ("c9,p1,,ecg/r1.mat,abc,,,,", "ecg_start_s", "c9", "not a number"),
        ("c9,p1,,ecg/r1.mat,nan,,,,", "ecg_start_s", "c9", "finite"),
        ("c9,p1,,,5,,hello,,", "ecg_start_s", "c9", "no ecg file"),
        ("c9,p1,,,,,hello,426783006,", "labels", "c9", "no code system"),
        ("c9,p1,,,,,hello,snomed:,", "labels", "c9", "no code"),
        ("c9,p1,,,,,hello,snomed:sinus rhythm,", "labels", "c9", "contains spaces"),
        ("c9,p1,,,,,hello,|123,", "labels", "c9", "empty code system"),
        ("c9,p1,,,,,hello,foo:123,", "labels", "c9", "no code system"),
        ("c9,p1,,,,,hello,snomed:1,snomed:1", "unknown_labels", "c9", "both as a label"),
    ],
)
def test_each_bad_row_is_reported_with_line_case_and_column(
    folder: Path, line: str, column: str, case_id: str | None, words: str
) -> None:
    path = csv_manifest(folder, HEADER, "c1,p1,,ecg/r1.mat,,,,snomed:426783006,", line)
    problem = only_problem(path)
    assert (problem.line, problem.column, problem.case_id) == (3, column, case_id)
    assert words in problem.message
    message = str(ManifestError(path, [problem]))
    assert message.startswith(f"The manifest {path} has 1 problem; nothing was trained:")
    assert f"line 3{f' (case {case_id})' if case_id else ''}, column {column}" in message


def test_duplicate_case_id_names_the_first_line(folder: Path) -> None:
    path = csv_manifest(folder, "case_id,group_id,note_text", "c1,p1,a", "c2,p2,b", "c1,p3,c")
    problem = only_problem(path)
    assert (problem.line, problem.case_id, problem.column) == (4, "c1", "case_id")
    assert "already used on line 2" in problem.message


def test_group_cut_across_splits_is_a_problem(folder: Path) -> None:
    path = csv_manifest(
        folder, "case_id,group_id,split,note_text", "c1,p1,train,a", "c2,p1,,b", "c3,p1,test,c"
    )
    problem = only_problem(path)
    assert (problem.line, problem.case_id, problem.column) == (4, "c3", "split")
    assert "group p1 is in split test here but in train on line 2" in problem.message


def test_synthetic_case_in_test_split_is_a_problem(folder: Path) -> None:
    path = csv_manifest(folder, "case_id,group_id,split,note_text,synthetic", "c1,p1,test,a,yes")
    problem = only_problem(path)
    assert problem.column == "split" and "synthetic" in problem.message


def test_a_directory_as_image_and_a_missing_note_are_reported(folder: Path) -> None:
    path = csv_manifest(
        folder, "case_id,group_id,images,note", "c1,p1,slides/a.png;slides,nope.txt"
    )
    problems = problems_of(path)
    assert [(p.line, p.column) for p in problems] == [(2, "images"), (2, "note")]
    assert "is a folder" in problems[0].message and "nope.txt not found" in problems[1].message


def test_vitals_problems(folder: Path) -> None:
    path = csv_manifest(
        folder,
        "case_id,group_id,note_text,vitals,vital:heart_rate_bpm",
        'c1,p1,a,"{""pulse"": 70}",',
        'c2,p1,a,"{""age_years"": ""old""}",',
        "c3,p1,a,,fast",
        "c4,p1,a,,inf",
        'c5,p1,a,"{age_years: 3}",',
        'c6,p1,a,"[1, 2]",',
        'c7,p1,a,"{""heart_rate_bpm"": 70}",71',
    )
    problems = problems_of(path)
    found = [(p.line, p.column) for p in problems]
    assert found == [
        (2, "vitals"),
        (3, "vitals.age_years"),
        (4, "vital:heart_rate_bpm"),
        (5, "vital:heart_rate_bpm"),
        (6, "vitals"),
        (7, "vitals"),
        (8, "vital:heart_rate_bpm"),
    ]
    messages = [p.message for p in problems]
    assert "unknown vital 'pulse'" in messages[0] and "heart_rate_bpm" in messages[0]
    assert "not a number" in messages[1] and "not a number" in messages[2]
    assert "finite" in messages[3]
    assert "not valid JSON" in messages[4] and "JSON object" in messages[5]
    assert "given twice" in messages[6]


def test_unknown_vital_column_is_reported_once_in_the_header(folder: Path) -> None:
    path = csv_manifest(
        folder, "case_id,group_id,note_text,vital:pulse", "c1,p1,a,70", "c2,p2,b,71"
    )
    problem = only_problem(path)
    assert (problem.line, problem.column) == (1, "header") and "vital:pulse" in problem.message


def test_labels_and_heads_outside_the_model_are_reported(folder: Path) -> None:
    path = csv_manifest(
        folder,
        "case_id,group_id,note_text,labels,head:specialty,head:urgency",
        f"c1,p1,a,{SR},Cardiology,",
        f"c2,p2,a,{TACHY},Dermatology,",
        "c3,p3,a,,,high",
    )
    problems = problems_of(path, known_labels=[SR], known_heads={"specialty": ["Cardiology"]})
    assert [(p.line, p.column) for p in problems] == [
        (3, "labels"),
        (3, "head:specialty"),
        (4, "head:urgency"),
    ]
    assert "not one of the model's labels" in problems[0].message
    assert "'Dermatology' is not a class of head specialty" in problems[1].message
    assert "no head 'urgency'" in problems[2].message


def test_bad_booleans_and_sources(folder: Path) -> None:
    path = csv_manifest(
        folder,
        "case_id,group_id,note_text,composite,synthetic,sources",
        "c1,p1,a,maybe,,",
        "c2,p2,a,,2,",
        'c3,p3,a,,,"{oops}"',
    )
    problems = problems_of(path)
    assert [(p.line, p.column) for p in problems] == [
        (2, "composite"),
        (3, "synthetic"),
        (4, "sources"),
    ]
    assert "not true or false" in problems[0].message
    assert "not valid JSON" in problems[2].message


def test_unknown_and_missing_columns_are_named(folder: Path) -> None:
    path = csv_manifest(folder, "case_id,group_id,note_text,diagnosis,Split", "c1,p1,a,AF,train")
    problem = only_problem(path)
    assert (problem.line, problem.column) == (1, "header")
    assert "'diagnosis'" in problem.message and "'Split'" in problem.message
    path = csv_manifest(folder, "case_id,note_text", "c1,a")
    problem = only_problem(path)
    assert problem.line == 1 and "no group_id column" in problem.message


def test_jsonl_problems(folder: Path) -> None:
    path = folder / "m.jsonl"
    path.write_text(
        '{"case_id": "c1", "group_id": "p1", "note_text": "a"}\n'
        "[1, 2]\n"
        '{"case_id": "c3", "group_id": "p3"\n'
        '{"case_id": "c4", "group_id": "p4", "note_text": "a", "diagnosis": "AF"}\n'
        '{"case_id": "c5", "group_id": "p5", "images": "slides/a.png", "labels": [7]}\n',
        encoding="utf-8",
    )
    problems = problems_of(path)
    assert [(p.line, p.column) for p in problems] == [
        (2, ""),
        (3, ""),
        (4, "diagnosis"),
        (5, "labels"),
    ]
    assert "JSON object" in problems[0].message and "not a list" in problems[0].message
    assert "invalid JSON" in problems[1].message
    assert "unknown keys 'diagnosis'" in problems[2].message


def test_empty_unreadable_and_misnamed_files(tmp_path: Path) -> None:
    for name, content in (("a.csv", b""), ("b.csv", b"case_id,group_id\n\n"), ("c.jsonl", b"\n")):
        (tmp_path / name).write_bytes(content)
        problem = only_problem(tmp_path / name)
        assert problem.line == 0 and "no cases" in problem.message
    (tmp_path / "latin1.csv").write_bytes(
        "case_id,group_id,note_text\nc1,p1,caf\xe9\n".encode("latin-1")
    )
    problem = only_problem(tmp_path / "latin1.csv")
    assert problem.line == 0 and "not UTF-8" in problem.message
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    assert "could not be read" in only_problem(tmp_path / "broken.csv.gz").message
    assert "does not exist" in only_problem(tmp_path / "absent.csv").message
    (tmp_path / "m.xlsx").write_bytes(b"x")
    assert ".csv, .jsonl or .ndjson" in only_problem(tmp_path / "m.xlsx").message
    (tmp_path / "dir.csv").mkdir()
    assert "folder" in only_problem(tmp_path / "dir.csv").message


def test_five_different_bad_rows_are_all_reported_in_one_error(folder: Path) -> None:
    path = csv_manifest(
        folder,
        HEADER,
        "c1,p1,,ecg/r1.mat,,,,snomed:426783006,",  # good
        "c2,p2,,ecg/missing.mat,,,,,",  # missing file
        "c3,,,,,,text,,",  # no group
        "c4,p4,holdout,,,,text,,",  # bad split
        "c5,p5,,,,,text,SR,",  # bad label
        "c6,p6,,,,,,,",  # no input
        "c7,p7,,,,,text,,",  # good
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    error = info.value
    assert isinstance(error, ModelPackageError) and isinstance(error, ValueError)
    assert [(p.line, p.case_id, p.column) for p in error.problems] == [
        (3, "c2", "ecg"),
        (4, "c3", "group_id"),
        (5, "c4", "split"),
        (6, "c5", "labels"),
        (7, "c6", "images"),
    ]
    text = str(error)
    assert text.splitlines()[0] == f"The manifest {path} has 5 problems; nothing was trained:"
    assert "  line 3 (case c2), column ecg: file ecg/missing.mat not found" in text
    assert len(text.splitlines()) == 6
    restored = pickle.loads(pickle.dumps(error))
    assert restored.problems == error.problems and str(restored) == text


def test_the_message_is_capped_at_fifty_problems(folder: Path) -> None:
    lines = [f"c{i},p{i},,,,,,," for i in range(60)]
    path = csv_manifest(folder, HEADER, *lines)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert len(info.value.problems) == 60
    text = str(info.value).splitlines()
    assert len(text) == 52 and text[-1] == "  ... and 10 more"


# ---------------------------------------------------------------------------------------------
# Splits


def make_rows(
    n_groups: int, label_of: Mapping[int, tuple[str, ...]], per_group: int = 2
) -> tuple[ManifestRow, ...]:
    rows: list[ManifestRow] = []
    for g in range(n_groups):
        for k in range(per_group):
            rows.append(
                ManifestRow(
                    line=len(rows) + 2,
                    case_id=f"g{g}c{k}",
                    group_id=f"g{g}",
                    split=None,
                    note_text="x",
                    labels=label_of.get(g, (SR,)),
                )
            )
    return tuple(rows)


def splits_by_group(manifest: Manifest) -> dict[str, set[str | None]]:
    seen: dict[str, set[str | None]] = defaultdict(set)
    for row in manifest.rows:
        seen[row.group_id].add(row.split)
    return seen


def test_assign_splits_keeps_groups_whole_and_follows_fractions(tmp_path: Path) -> None:
    rare: dict[int, tuple[str, ...]] = {g: (AF,) for g in range(0, 200, 40)}  # 5 groups
    rare |= {g: (TACHY, SR) for g in range(3, 200, 10)}
    manifest = Manifest(tmp_path / "m.csv", make_rows(200, rare))
    result = assign_splits(manifest, seed=1)
    assert len(result.rows) == 400 and all(row.split is not None for row in result.rows)
    assert all(len(splits) == 1 for splits in splits_by_group(result).values())
    sizes = Counter(row.split for row in result.rows)
    assert abs(sizes["train"] - 280) <= 6 and abs(sizes["val"] - 60) <= 6
    assert abs(sizes["test"] - 60) <= 6
    for label in (AF, TACHY, SR):
        per_split = Counter(row.split for row in result.rows if label in row.labels)
        assert set(per_split) == {"train", "val", "test"}, (label, per_split)
    tachy = Counter(row.split for row in result.rows if TACHY in row.labels)
    assert abs(tachy["train"] - 28) <= 3
    assert [(r.case_id, r.line) for r in result.rows] == [
        (r.case_id, r.line) for r in manifest.rows
    ]


def test_rare_label_reaches_every_split_with_three_groups(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.csv", make_rows(30, {5: (AF,), 17: (AF,), 22: (AF,)}))
    for seed in range(5):
        result = assign_splits(manifest, seed=seed)
        assert {row.split for row in result.rows if AF in row.labels} == {"train", "val", "test"}


def test_assign_splits_is_deterministic_and_seeded(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.csv", make_rows(60, {g: (AF,) for g in range(0, 60, 7)}))
    first = assign_splits(manifest, seed=3)
    assert assign_splits(manifest, seed=3) == first
    shuffled = Manifest(manifest.path, tuple(reversed(manifest.rows)))
    assert {r.case_id: r.split for r in assign_splits(shuffled, seed=3).rows} == {
        r.case_id: r.split for r in first.rows
    }
    others = [assign_splits(manifest, seed=s) for s in range(4, 8)]
    assert any(o.rows != first.rows for o in others)


def test_explicit_splits_are_kept_and_their_groups_follow(tmp_path: Path) -> None:
    rows = list(make_rows(40, {}))
    rows[0] = ManifestRow(line=2, case_id="g0c0", group_id="g0", split="test", note_text="x")
    rows[4] = ManifestRow(line=6, case_id="g2c0", group_id="g2", split="val", note_text="x")
    synthetic = [
        ManifestRow(
            line=100 + i,
            case_id=f"s{i}",
            group_id=f"s{i}",
            split=None,
            note_text="x",
            synthetic=True,
        )
        for i in range(20)
    ]
    result = assign_splits(Manifest(tmp_path / "m.csv", (*rows, *synthetic)), seed=0)
    by_case = {row.case_id: row.split for row in result.rows}
    assert by_case["g0c0"] == by_case["g0c1"] == "test"
    assert by_case["g2c0"] == by_case["g2c1"] == "val"
    assert all(by_case[f"s{i}"] != "test" for i in range(20))


def test_assign_splits_refuses_bad_fractions_and_cut_groups(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "m.csv", make_rows(4, {}))
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(manifest, fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(manifest, fractions=(1.0, -0.5, 0.5))
    rows = list(manifest.rows)
    rows[0] = ManifestRow(line=2, case_id="g0c0", group_id="g0", split="train", note_text="x")
    rows[1] = ManifestRow(line=3, case_id="g0c1", group_id="g0", split="test", note_text="x")
    with pytest.raises(ManifestError, match="one patient's cases"):
        assign_splits(Manifest(manifest.path, tuple(rows)))


def test_fraction_zero_leaves_a_split_empty(tmp_path: Path) -> None:
    result = assign_splits(Manifest(tmp_path / "m.csv", make_rows(20, {})), fractions=(0.8, 0.2, 0))
    assert {row.split for row in result.rows} == {"train", "val"}


# ---------------------------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize("name", ["out/m.csv", "out/m.jsonl", "m.csv.gz", "m.jsonl.gz"])
def test_write_manifest_round_trips(folder: Path, name: str) -> None:
    (folder / "m.csv").write_text(GOOD_CSV, encoding="utf-8")
    original = assign_splits(load_manifest(folder / "m.csv"))
    extra = ManifestRow(
        line=9,
        case_id="c3",
        group_id="p3",
        split="val",
        note_text='  leading spaces, "quotes" and ünïcode\n',
        vitals={"temperature_c": 36.85, "sex_male": 1.0},
        labels=("http://loinc.org|1234-5",),
        heads={"urgency": "high"},
        synthetic=True,
    )
    rows = (*original.rows, extra)
    path = folder / name
    write_manifest(rows, path)
    loaded = load_manifest(path)
    assert [{k: v for k, v in vars(r).items() if k != "line"} for r in loaded.rows] == [
        {k: v for k, v in vars(r).items() if k != "line"} for r in rows
    ]
    write_manifest(loaded, path)  # a Manifest is accepted too, and overwrites
    assert load_manifest(path).rows == loaded.rows


def test_write_manifest_refuses_a_semicolon_in_a_csv_list(tmp_path: Path) -> None:
    row = ManifestRow(line=2, case_id="c", group_id="g", split=None, images=(tmp_path / "a;b.png",))
    with pytest.raises(ValueError, match="JSONL"):
        write_manifest([row], tmp_path / "m.csv")
    write_manifest([row], tmp_path / "m.jsonl")
    assert load_manifest(tmp_path / "m.jsonl", check_files=False).rows[0].images == row.images
