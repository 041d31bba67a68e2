"""Every study in evidence_v1.json against the seed's own table text.

Each printed table row is rebuilt from the study (or the stacked cohorts sharing it) and must
equal the seed's row text exactly, once whitespace is collapsed: author [ref] year, country
(Table 2), n, approach/technique, median FU, dose, every outcome cell in printed order, late
grade >= 3 and grade-5 toxicity. So a wrong, missing or extra figure fails.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from rnpc_evidence.domain.catalogue import evidence_version, load_studies
from rnpc_shared.contracts.evidence import Range, Study, StudyOutcome
from rnpc_shared.contracts.record import Modality

# Studies per source table, counted by hand from the seed.
# Table 1 (11): Chen [46] 2009, Ko [44] 2009, Sun [47] 2015, Tsang [48] 2015, You [37] 2015,
#   Liu [45] 2017, Chan [49] 2018, Wong [53] 2020, Wei [58] 2011, Chan [59] 2012, Chan [60] 2015.
# Table 2 (15 studies from 14 printed rows): Chua [75] 2005, Han [20] 2012, Hua [76] 2012,
#   Qiu [82] 2012, Chen [77] 2013, Tian [80] 2014, Tian [78] 2014 cohort a (59 pts, 60 Gy),
#   Tian [78] 2014 cohort b (58 pts, 68 Gy), Chan [83] 2017, Tian [79] 2017, Li [17] 2018,
#   Roeder [84] 2011, Puebla [85] 2015, Karam [86] 2016, Agas [74] 2019.
# Table 3 (17): Chua [89] 2006 SRS, Chua [91] 2009 SRS, Lee [90] 2020 SRS, Xiao [98] 2001,
#   Wu [99] 2007, Chua [91] 2009 SBRT, Leung [94] 2009, Seo [95] 2009, Ozyigit [96] 2011,
#   Dizman [97] 2014 (SBRT); Lin [102] 1999, Dionisi [103] 2019 (PBT); Hu [108] 2018 (CIRT);
#   Kwong [110] 2001, Shen [111] 2015, Yan [112] 2017, Leung [113] 2005 (BRT).
# Post-review (2): Liu 2021 (ENP vs IMRT), You 2023 (hyperfractionated re-IMRT).
STUDIES_PER_TABLE = {"1": 11, "2": 15, "3": 17, "post-review": 2}
PRINTED_ROWS_PER_TABLE = {"1": 11, "2": 14, "3": 17}  # Tian 2014 [78] is one printed row

# Table block: from its caption to its footnote.
TABLE_BOUNDS = {
    "1": ("Table 1. Outcomes of endoscopic", "ENP, endoscopic nasopharyngectomy; MSNP"),
    "2": ("Table 2. Outcomes of re-irradiation using intensity", "IMRT, intensity-modulated radiation therapy; Gy"),
    "3": ("Table 3. Outcomes of re-irradiation using non-IMRT", "SRS, stereotactic radiosurgery; SBRT"),
}
ROW_HEAD = re.compile(r"([A-Z][a-z]+) \[(\d+)\] (\d{4}) ")

# The printed approach / technique column (Tables 1 and 3).
PRINTED_ABBREVIATION = {
    Modality.enp: "ENP",
    Modality.msnp: "MSNP",
    Modality.srs: "SRS",
    Modality.sbrt: "SBRT",
    Modality.proton: "PBT",
    Modality.carbon_ion: "CIRT",
    Modality.brachytherapy: "BRT",
}

# Outcomes taken from the seed's text rather than a table cell: (study, metric, horizon) -> quote.
TEXT_SOURCED_OUTCOMES = {
    ("t3-hu-2018-ref108", "LRFS", 1.0): "1-year local relapse-free survival in 87%",
    ("t3-chua-2009-ref91-srs", "LFFS", 3.0): "3-year local failure-free rate 51% for SRS",
    ("t3-chua-2009-ref91-sbrt", "LFFS", 3.0): "83% for SBRT, p = 0.003",
}

Key = tuple[str, str, int, int]  # (table, author, ref, year)


def normalise(text: str) -> str:
    return " ".join(text.split())


def fmt_number(value: float) -> str:
    return f"{value:g}"


def fmt_range(value: Range | None) -> str:
    if value is None:
        return "N/A"
    if value.low == value.high:
        return fmt_number(value.low)
    return f"{fmt_number(value.low)}–{fmt_number(value.high)}"


def outcome_label(outcome: StudyOutcome) -> str:
    horizon = "" if outcome.horizon_years is None else f"{fmt_number(outcome.horizon_years)}-year "
    return f"{horizon}{outcome.metric.value}: {fmt_range(outcome.percent)}"


def is_text_sourced(study: Study, outcome: StudyOutcome) -> bool:
    return (study.study_id, outcome.metric.value, outcome.horizon_years) in TEXT_SOURCED_OUTCOMES


def table_rows(seed_text: str, table: str) -> dict[Key, list[str]]:
    """The seed's printed rows of one table, whitespace-normalised, keyed by author/ref/year."""
    start_marker, end_marker = TABLE_BOUNDS[table]
    start = seed_text.index(start_marker)
    block = seed_text[start : seed_text.index(end_marker, start)]
    # Drop the repeated column header of a continued table ("Table 2. Cont." ... "Grade 5 Toxicity, %").
    block = re.sub(r"Table \d\. Cont\..*?Grade 5\s+Toxicity, %", " ", block, flags=re.DOTALL)
    block = normalise(block)
    heads = list(ROW_HEAD.finditer(block))
    rows: dict[Key, list[str]] = defaultdict(list)
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        text = block[head.start() : following.start() if following else len(block)].strip()
        # Sun [47] prints its follow-up as "5-96" with a hyphen; compare ranges with an en dash.
        text = re.sub(r"(\d)-(\d)", r"\1–\2", text)
        rows[(table, head[1], int(head[2]), int(head[3]))].append(text)
    return rows


def rebuild_row(table: str, cohorts: list[Study]) -> str:
    """The printed row for one study, or for cohorts stacked in one row (cells top to bottom)."""
    first = cohorts[0]
    head = [f"{first.first_author} [{first.reference}] {first.year}"]
    if table == "2":
        head.append(str(first.country))
    head += [str(c.n) for c in cohorts]
    technique = PRINTED_ABBREVIATION.get(first.modality, "")
    if first.modality == Modality.brachytherapy:  # the BRT cell also prints the source / approach
        technique += f" {first.technique}"
    follow_up = fmt_range(first.median_follow_up_months)
    doses = [str(c.dose).replace("; ", " ") for c in cohorts]  # Wu [99]: two dose lines
    middle = {
        "1": [technique, follow_up],
        "2": [follow_up, *doses],
        "3": [technique, follow_up, *doses],
    }[table]
    outcomes = [outcome_label(o) for o in first.outcomes if not is_text_sourced(first, o)]
    toxicity = [fmt_range(c.late_grade3_toxicity_percent) for c in cohorts]
    toxicity += [fmt_range(c.grade5_toxicity_percent) for c in cohorts]
    return " ".join([*head, *middle, *outcomes, *toxicity])


@pytest.fixture(scope="module")
def studies() -> tuple[Study, ...]:
    return load_studies()


def studies_by_row(studies: tuple[Study, ...], table: str) -> dict[Key, list[Study]]:
    grouped: dict[Key, list[Study]] = defaultdict(list)
    for study in studies:
        if study.source_table == table:
            grouped[(table, study.first_author, study.reference, study.year)].append(study)
    return grouped


def test_version_and_counts_per_table(studies: tuple[Study, ...]) -> None:
    assert evidence_version() == "seed-tables/2026.11.1"
    counts: dict[str, int] = defaultdict(int)
    for study in studies:
        counts[study.source_table] += 1
    assert dict(counts) == STUDIES_PER_TABLE
    assert len({s.study_id for s in studies}) == len(studies)


@pytest.mark.parametrize("table", ["1", "2", "3"])
def test_printed_row_count(seed_text: str, table: str) -> None:
    rows = table_rows(seed_text, table)
    assert sum(len(texts) for texts in rows.values()) == PRINTED_ROWS_PER_TABLE[table]


@pytest.mark.parametrize("table", ["1", "2", "3"])
def test_every_row_matches_the_seed(seed_text: str, studies: tuple[Study, ...], table: str) -> None:
    printed = table_rows(seed_text, table)
    ours = studies_by_row(studies, table)
    assert sorted(printed) == sorted(ours), "printed rows and studies differ in author/ref/year"
    for key, texts in printed.items():
        cohorts = ours[key]
        if len(texts) == len(cohorts):  # one study per printed row (e.g. Chua 2009 [91] SRS, SBRT)
            pairs = [(text, [study]) for text, study in zip(texts, cohorts, strict=True)]
        else:  # cohorts stacked in one printed row (Tian 2014 [78])
            assert len(texts) == 1 and len(cohorts) > 1, key
            pairs = [(texts[0], cohorts)]
        for text, row_studies in pairs:
            assert rebuild_row(table, row_studies) == text, [s.study_id for s in row_studies]


def test_stacked_cohorts_share_the_spanning_cells(studies: tuple[Study, ...]) -> None:
    tian_a, tian_b = (s for s in studies if s.reference == 78)
    assert (tian_a.cohort, tian_a.n, tian_a.dose) == ("a: 60 Gy", 59, "60")
    assert (tian_b.cohort, tian_b.n, tian_b.dose) == ("b: 68 Gy", 58, "68")
    assert tian_a.outcomes == tian_b.outcomes  # "3-year OS: 38–57", "5-year OS: 30–44" span both
    assert tian_a.median_follow_up_months == tian_b.median_follow_up_months == Range(low=25, high=25)


def test_text_sourced_outcomes_are_in_the_seed_text(seed_text: str, studies: tuple[Study, ...]) -> None:
    seed = normalise(seed_text)
    found = {
        (s.study_id, o.metric.value, o.horizon_years): o for s in studies for o in s.outcomes if is_text_sourced(s, o)
    }
    assert sorted(found) == sorted(TEXT_SOURCED_OUTCOMES)
    for key, quote in TEXT_SOURCED_OUTCOMES.items():
        assert quote in seed, quote
        assert f"{fmt_range(found[key].percent)}%" in quote, key


def test_quoted_passages_in_notes_are_verbatim(studies: tuple[Study, ...], quotable_text: str) -> None:
    for study in studies:
        for note in study.notes:
            for quote in re.findall(r'"([^"]+)"', note):
                assert quote in quotable_text, (study.study_id, quote)


def test_country_endemic_and_citation(seed_text: str, studies: tuple[Study, ...]) -> None:
    seed = normalise(seed_text)
    chinese = re.search(r"Chinese studies \[([^\]]+)\]", seed)
    rest = re.search(r"studies from the rest of the world \[([^\]]+)\]", seed)
    assert chinese and rest

    def refs(printed: str) -> set[int]:  # "17,20,75–80,82,83" -> {17, 20, 75, ..., 80, 82, 83}
        out: set[int] = set()
        for part in printed.split(","):
            low, _, high = part.partition("–")
            out.update(range(int(low), int(high or low) + 1))
        return out

    endemic_refs, non_endemic_refs = refs(chinese[1]), refs(rest[1])
    for study in studies:
        if study.source_table == "2":
            assert study.country is not None
            assert study.endemic is (study.reference in endemic_refs), study.study_id
            assert study.reference in endemic_refs | non_endemic_refs, study.study_id
        else:  # Tables 1 and 3 have no country column, and the seed states none elsewhere
            assert study.country is None and study.endemic is None, study.study_id
        if study.source_table != "post-review":
            assert study.citation == (
                f"Seed Table {study.source_table}, ref [{study.reference}]: {study.first_author} {study.year}"
            )


def test_outcomes_are_unique_and_horizonless_only_for_cr_cm(studies: tuple[Study, ...]) -> None:
    for study in studies:
        keys = [(o.metric, o.horizon_years) for o in study.outcomes]
        assert len(keys) == len(set(keys)), study.study_id
        for outcome in study.outcomes:
            assert (outcome.horizon_years is None) == (outcome.metric.value in ("CR", "CM")), study.study_id


def test_post_review_trials_carry_design_only(studies: tuple[Study, ...], quotable_text: str) -> None:
    trials = {s.first_author: s for s in studies if s.source_table == "post-review"}
    assert sorted(trials) == ["Liu", "You"]
    liu, you = trials["Liu"], trials["You"]
    assert (liu.year, liu.modality, you.year, you.modality) == (2021, Modality.enp, 2023, Modality.reimrt)
    assert "Lancet Oncol 2021;22:381" in liu.design and "Lancet 2023;401:917" in you.design
    for schedule in ("65 Gy/54 fx", "60 Gy/27 fx"):  # You 2023 arms, as MODELS.md §2 names them
        assert schedule in you.design and schedule in quotable_text
    for trial in (liu, you):
        assert trial.outcomes == [] and trial.n is None and trial.reference is None
        assert trial.late_grade3_toxicity_percent is None and trial.grade5_toxicity_percent is None
        assert any("not confirmed" in note for note in trial.notes)
