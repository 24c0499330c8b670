"""Row files a person can tell apart (issue 18 item 3): `rows/<slug>-<cell id>.jsonl`, the slug from the cell's
sampler, knob, budget or steps and cache; folders written before (`rows/<cell id>.jsonl`) are still found, resumed
and reported (boe_eval.store)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_sweep import GRID, compose, write_sweep

from boe_eval.harness.specs import CellSpec
from boe_eval.store import (
    cell_file_name,
    cell_id,
    cell_id_of,
    cell_path,
    claim_cell,
    find_cell_file,
    is_complete,
    read_cell,
    read_rows,
    verify_file,
    write_cell,
)


def _spec(**overrides) -> CellSpec:
    fields = dict(model_name="tiny_addition", model_path="builtin:tiny_addition", sampler="boe",
                  sampler_params={"rho": 0.25}, task="tiny_addition", lm_eval_task="tiny_addition",
                  primary_metric="exact_match", gen_length=12, steps=32, block_length=12,
                  extra={"budget": 64, "budget_axis": "nfe", "variant": "boe"})
    return CellSpec(**{**fields, **overrides})


@pytest.mark.parametrize("spec, summary, slug", [
    (_spec(), {"sweep.knob": "steps", "sweep.knob_value": 32}, "boe-nfe64"),
    (_spec(sampler="eb", sampler_params={"gamma": 0.01}, steps=256, extra={"budget": None, "budget_axis": "nfe"}),
     {"sweep.knob": "gamma", "sweep.knob_value": 0.01}, "eb-gamma0.01-steps256"),
    (_spec(sampler="threshold", sampler_params={"threshold": 0.9}, steps=12, cache="dual", extra={}),
     {"sweep.knob": "threshold", "sweep.knob_value": 0.9}, "threshold-threshold0.9-steps12-dual"),
    (_spec(sampler="confidence", sampler_params={}, steps=64, extra={}), None, "confidence-steps64"),  # a plain run
    (_spec(sampler="lookum", sampler_params={"signal": "random"}, steps=8, extra={"variant": "lookum_control_random"}),
     None, "lookum_control_random-steps8"),  # a control: named by its variant, not by the sampler it runs
])
def test_a_hand_built_cell_gets_a_name_that_says_which_cell_it_is(spec, summary, slug, tmp_path):
    cid = cell_id(spec.identity())
    assert cell_file_name(cid, spec.identity(), summary) == f"{slug}-{cid}.jsonl"
    rows = [{"row_type": "example", "doc_id": 0, "score": 1.0, "cell_id": cid},
            {"row_type": "summary", "n_examples": 1, "score": 1.0, "cell_id": cid, **(summary or {})}]
    path = write_cell(tmp_path, cid, rows, identity=spec.identity())
    assert path == tmp_path / "rows" / f"{slug}-{cid}.jsonl" and cell_id_of(path) == cid
    assert verify_file(path).ok and is_complete(tmp_path, cid) and read_cell(tmp_path, cid) == rows
    assert find_cell_file(tmp_path, cid) == cell_path(tmp_path, cid) == path
    assert claim_cell(tmp_path, cid) == ("complete", None)


def test_a_cell_without_a_sampler_in_its_identity_keeps_the_plain_name(tmp_path):
    assert cell_file_name("0123abcd", {"limit": 4}) == cell_file_name("0123abcd") == "0123abcd.jsonl"
    path = write_cell(tmp_path, "0123abcd", [{"row_type": "summary", "n_examples": 0}], identity={"limit": 4})
    assert path.name == "0123abcd.jsonl" and is_complete(tmp_path, "0123abcd")


def test_a_file_named_for_another_cell_does_not_verify(tmp_path):
    cid = cell_id({"sampler": "margin", "steps": 8})
    path = write_cell(tmp_path, cid, [{"row_type": "summary", "n_examples": 0, "cell_id": cid}],
                      identity={"sampler": "margin", "steps": 8})
    moved = path.with_name(f"margin-steps8-{'f' * 16}.jsonl")
    path.rename(moved)
    assert not verify_file(moved).ok and "belongs to cell" in verify_file(moved).reason


def test_a_folder_with_plain_names_is_resumed_and_reported_as_before(tiny_bert_dir, tmp_path):
    """A sweep whose cells carry the plain names of older folders: a rerun finds every cell complete (no file
    written, none added), a damaged one is recomputed under its plain name, and boe-report's tables are those of
    the same folder with readable names except the file-name column of rows.md."""
    from boe_eval.analysis.report import write_report
    from boe_eval.harness.sweep import run_sweep

    readable = tmp_path / "readable"
    overrides = write_sweep(tmp_path / "conf", "grid", GRID, tiny_bert_dir, readable) + ["plot=false", "+report=false"]
    run_sweep(compose(overrides))
    files = sorted((readable / "rows").glob("*.jsonl"))
    assert len(files) == 9 and all(f.name.count("-") == 2 and f.name.split("-")[1] in ("nfe2", "nfe4", "nfe8")
                                   for f in files)  # e.g. confidence-nfe4-<cell id>.jsonl
    plain = tmp_path / "plain"
    shutil.copytree(readable, plain)
    for f in (plain / "rows").glob("*.jsonl"):
        f.rename(f.with_name(f"{cell_id_of(f)}.jsonl"))
    stamps = {f.name: f.stat().st_mtime_ns for f in (plain / "rows").glob("*.jsonl")}
    run_sweep(compose([o.replace(str(readable), str(plain)) for o in overrides]))
    assert {f.name: f.stat().st_mtime_ns for f in (plain / "rows").glob("*.jsonl")} == stamps  # all skipped

    victim = plain / "rows" / sorted(stamps)[3]
    victim.write_bytes(victim.read_bytes()[:-40])
    with pytest.warns(UserWarning, match="recomputing this cell"):
        run_sweep(compose([o.replace(str(readable), str(plain)) for o in overrides]))
    assert sorted(f.name for f in (plain / "rows").glob("*.jsonl")) == sorted(stamps)  # recomputed, same name
    assert verify_file(victim).ok

    for folder in (readable, plain):
        write_report(folder, plot=False)
    for name in ("accuracy_by_budget.md", "table_main.md", "table_main.tex"):  # (cells.md shows wall times)
        assert (plain / name).read_text() == (readable / name).read_text(), name
    assert len(read_rows(plain)) == len(read_rows(readable)) == 9 * 4
    plain_index, readable_index = ((f / "rows.md").read_text() for f in (plain, readable))
    assert "its name is the hash of the cell's settings" in plain_index
    assert "ends with the hash of the cell's settings" in readable_index
    for f in files:  # each line names the file as it is in its folder
        assert f"| {f.name} " in readable_index and f"| {cell_id_of(f)}.jsonl " in plain_index


def test_every_committed_results_folder_keeps_finding_its_cells():
    """The committed folders (plain names when this was written): every file is found by the cell id its name ends
    with, and its completion record, where it has one, names that id."""
    committed = sorted(Path(__file__).parents[1].glob("results/**/rows/*.jsonl"))
    assert committed
    for f in committed[::7]:
        cid = cell_id_of(f)
        assert find_cell_file(f.parent.parent, cid) == f
        check = verify_file(f)
        assert check.ok and (check.record is None or check.record["cell_id"] == cid)


def test_the_summary_table_names_each_cells_file_as_it_is():
    from boe_eval.analysis.tables import format_summary_table

    summary = {"row_type": "summary", "model": "m", "task": "t", "primary_metric": "exact_match", "sampler": "boe",
               "variant": "boe", "n_examples": 2, "score": 0.5, "gen_length": 8, "steps": 4, "block_length": 8,
               "nfe": 8.0, "forwards": 8.0, "backwards": 4.0, "forward_equivalents": 16.0, "wall_time_s": 1.0}
    plain = format_summary_table([{**summary, "cell_id": "00ff"}])
    named = format_summary_table([{**summary, "cell_id": "00ff"}], {"00ff": "boe-steps4-00ff.jsonl"})
    assert "| rows/00ff.jsonl |" in plain and "| rows/boe-steps4-00ff.jsonl |" in named
