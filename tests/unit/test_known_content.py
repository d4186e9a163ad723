"""Known-content matching: fingerprints, the CSV exchange format, versioned list files, the index, reloads."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from textguard.errors import DataError
from textguard.known_content import (
    HashListStore,
    KnownContentIndex,
    KnownContentReloader,
    canonical_text,
    fingerprints,
    read_exchange_csv,
    write_exchange_csv,
)
from textguard.known_content.fingerprint import MAX_FUZZY_DISTANCE, MIN_FUZZY_CHARS, MINHASH_SLOTS, minhash
from textguard.text import normalize

# Written for these tests: a passage in the register of extremist propaganda, and texts of the same
# length and topic that are not copies of it.
PASSAGE = (
    "Brothers of the northern cells, the hour has come. Every traitor who stands with the government "
    "will be hunted down and punished, and the fire we light tonight will spread through every city "
    "until the old order falls and our banner flies over the ruins."
)
UNRELATED = [
    # news reporting on an attack
    "Police in the northern city said the attack overnight was carried out by members of a banned group. "
    "Officials condemned the violence, and the government promised that those responsible would be found "
    "and brought before a court as soon as possible.",
    # counter-speech
    "People who call for hunting down so-called traitors and burning cities are not brothers of anyone. "
    "Their banner stands for ruins and grief, and every one of us who rejects them makes the old lie of "
    "violent purity a little weaker tonight.",
    # other propaganda, same themes, different text
    "Soldiers of the faith, wake up and take your place in the ranks. The enemies of our people grow "
    "weaker every day; strike them in their markets and their homes until the last of them has fled "
    "from the land that belongs to us.",
]
SLOGAN = "Glory to the martyrs of the dawn"


@pytest.fixture
def store(tmp_path: Path) -> HashListStore:
    return HashListStore(tmp_path / "lists")


def _index(store: HashListStore) -> KnownContentIndex:
    return KnownContentIndex.load(store.directory)


def _match(index: KnownContentIndex, text: str) -> list[tuple[str, str]]:
    return [(match.kind, match.list_id) for match in index.match(normalize(text))]


# --- fingerprints ---------------------------------------------------------------------------------


def test_canonical_form_folds_case_punctuation_and_accents() -> None:
    assert canonical_text(normalize("Héllo,  WORLD!! — it's_me 😀")) == "hello world it s me"
    assert canonical_text("") == ""


def test_long_text_gets_both_fingerprints_and_a_slogan_only_the_exact_one() -> None:
    assert [kind for kind, _ in fingerprints(PASSAGE)] == ["sha256", "minhash"]
    assert [kind for kind, _ in fingerprints(SLOGAN)] == ["sha256"]
    assert len(canonical_text(normalize(SLOGAN))) < MIN_FUZZY_CHARS
    assert fingerprints("!!! 😀 \u200b") == []


def test_minhash_follows_its_documented_algorithm() -> None:
    # A straight transcription of the algorithm in fingerprint.py's docstring, in plain integers: the
    # exchange format promises partners can compute the same values.
    mask = (1 << 64) - 1

    def splitmix64(seed: int) -> int:
        value = (seed + 0x9E3779B97F4A7C15) & mask
        value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & mask
        value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & mask
        return value ^ (value >> 31)

    def fmix64(value: int) -> int:
        value ^= value >> 33
        value = (value * 0xFF51AFD7ED558CCD) & mask
        value ^= value >> 33
        value = (value * 0xC4CEB9FE1A85EC53) & mask
        return value ^ (value >> 33)

    canonical = canonical_text(normalize(PASSAGE))
    codes = [ord(char) for char in canonical]
    shingles = set()
    for start in range(len(codes) - 4):
        folded = 0
        for code in codes[start : start + 5]:
            folded = (folded * 1099511628211 + code) & mask
        shingles.add(fmix64(folded))
    slots = []
    for slot in range(128):
        a, b = splitmix64(2 * slot + 1) | 1, splitmix64(2 * slot + 2)
        slots.append((min((a * s + b) & mask for s in shingles) >> 32) & 0xFF)
    assert minhash(canonical) == bytes(slots)


# --- matching -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edited",
    [
        PASSAGE.replace("punished", "destroyed"),  # one word changed
        PASSAGE.replace("traitor", "coward").upper(),  # a word changed, and shouted
        PASSAGE.replace(",", "").replace(".", "!!") + " Share this.",  # punctuation, and a tail
        PASSAGE.replace("hunted down", "hunted down like dogs"),  # words inserted
        PASSAGE.replace("the government ", ""),  # words dropped
        PASSAGE.replace("tonight", "tonihgt").replace("city", "town"),  # a typo and a word
    ],
)
def test_lightly_edited_passage_still_matches_by_minhash(store: HashListStore, edited: str) -> None:
    store.add_text("manifestos", PASSAGE, label="extremist_glorification")
    matches = _index(store).match(normalize(edited))
    fuzzy = [match for match in matches if match.kind == "minhash"]
    assert len(fuzzy) == 1, matches
    assert 0 < fuzzy[0].distance <= MAX_FUZZY_DISTANCE
    assert fuzzy[0].list_id == "manifestos" and fuzzy[0].label == "extremist_glorification"
    assert fuzzy[0].list_version == 1


def test_casing_and_punctuation_alone_match_exactly(store: HashListStore) -> None:
    store.add_text("manifestos", PASSAGE)
    matches = _index(store).match(normalize(PASSAGE.lower().replace(",", " ,")))
    assert [(match.kind, match.distance) for match in matches] == [("exact", 0), ("minhash", 0)]


@pytest.mark.parametrize("unrelated", UNRELATED)
def test_unrelated_text_of_the_same_topic_and_length_does_not_match(
    store: HashListStore, unrelated: str
) -> None:
    store.add_text("manifestos", PASSAGE)
    index = _index(store)
    assert index.match(normalize(unrelated)) == []
    # and not narrowly: fewer than a third of the slots agree
    query = minhash(canonical_text(normalize(unrelated)))
    listed = minhash(canonical_text(normalize(PASSAGE)))
    assert query is not None and listed is not None
    assert sum(a == b for a, b in zip(query, listed, strict=True)) < MINHASH_SLOTS / 3


@pytest.mark.parametrize(
    "disguised",
    [
        "Glory to the mar\u200btyrs of the d\u200dawn",  # zero-width characters
        "Glоry tо the mаrtyrs оf the dаwn",  # Cyrillic look-alikes
        "Gl0ry to the m4rtyrs of the d@wn",  # leetspeak
        "ＧＬＯＲＹ ｔｏ ｔｈｅ ｍａｒｔｙｒｓ ｏｆ ｔｈｅ ｄａｗｎ",  # full-width
        "glory to the m a r t y r s  of the dawn!!!",  # spelled out, shouted
        "Glory, to the martyrs... of the dawn",  # punctuation
    ],
)
def test_normalisation_tricks_still_match_exactly(store: HashListStore, disguised: str) -> None:
    store.add_text("slogans", SLOGAN)
    assert _match(_index(store), disguised) == [("exact", "slogans")]


def test_a_listed_slogan_is_found_as_a_sentence_of_a_longer_message(store: HashListStore) -> None:
    store.add_text("slogans", SLOGAN)
    assert _match(_index(store), f"see you all tomorrow. {SLOGAN}! bring snacks") == [("exact", "slogans")]


def test_short_slogans_are_exact_only(store: HashListStore) -> None:
    store.add_text("slogans", SLOGAN)
    assert _index(store).match(normalize("Glory to the heroes of the dawn")) == []


def test_every_list_holding_a_hash_reports_it(store: HashListStore) -> None:
    store.add_text("local", SLOGAN, label="extremist_glorification")
    store.add_text("partner", SLOGAN)
    matches = _index(store).match(normalize(SLOGAN))
    assert [(match.list_id, match.label) for match in matches] == [
        ("local", "extremist_glorification"),
        ("partner", None),
    ]


def test_empty_index_matches_nothing() -> None:
    index = KnownContentIndex.empty()
    assert index.match(normalize(PASSAGE)) == [] and len(index) == 0


# --- the exchange format --------------------------------------------------------------------------

GOOD_SHA = "a" * 64
HEADER = "hash_type,hash_value"


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hashes.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_export_and_import_round_trip(store: HashListStore, tmp_path: Path) -> None:
    store.add_text("local", PASSAGE, label="extremist_glorification", source="incident-7", note="seen twice")
    store.add_text("local", SLOGAN)
    exported = tmp_path / "local.csv"
    with exported.open("w", encoding="utf-8", newline="") as handle:
        write_exchange_csv([("local", entry) for entry in store.get("local").entries], handle)
    assert "Brothers" not in exported.read_text(encoding="utf-8")  # hashes only, never the text
    partner = HashListStore(tmp_path / "partner")
    with pytest.raises(DataError, match=r"line 2, field list_id: 'local' is not the list imported into"):
        partner.import_file("shared", exported)
    change = partner.import_file("local", exported)
    assert (change.added, change.version) == (3, 1)
    assert partner.get("local").entries == store.get("local").entries
    assert _match(_index(partner), PASSAGE.replace("punished", "jailed")) == [("minhash", "local")]


def test_import_accepts_columns_in_any_order_and_optional_ones_missing(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"\ufeffHash_Value , hash_type\n{GOOD_SHA.upper()},SHA256\n\n")
    (entry,) = read_exchange_csv(path, list_id="x")
    assert (entry.hash_type, entry.hash_value, entry.label) == ("sha256", GOOD_SHA, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry.added_at)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            f"hash_type,hash_value\nsha256,{GOOD_SHA}\ntlsh,T1{'A' * 70}\n",
            r"line 3, field hash_type: 'tlsh'.*TLSH",
        ),
        (
            f"hash_type,hash_value\nsha256,{GOOD_SHA}\nsha256,abc\n",
            r"line 3, field hash_value: a sha256 value is 64",
        ),
        (f"hash_type,hash_value\nminhash,{GOOD_SHA}\n", r"line 2, field hash_value: a minhash value is 256"),
        (f"hash_type,hash_value,label\nsha256,{GOOD_SHA},bad label!\n", r"line 2, field label:"),
        (f"hash_type,hash_value,added_at\nsha256,{GOOD_SHA},last week\n", r"line 2, field added_at:"),
        (f'hash_type,hash_value,note\nsha256,{GOOD_SHA},"two\nlines"\n', r"line 2, field note: .*control"),
        (f"hash_type,hash_value,list_id\nsha256,{GOOD_SHA},other\n", r"line 2, field list_id: 'other'"),
        (f"hash_type,hash_value\nsha256,{GOOD_SHA},extra\n", r"line 2: 3 fields, the header has 2"),
        (f"hash_type,hash_value,colour\nsha256,{GOOD_SHA},red\n", r"line 1: unknown column 'colour'"),
        ("hash_type\nsha256\n", r"line 1: missing column 'hash_value'"),
        ("hash_type,hash_value\n", r"a header but no hash rows"),
        ("", r"empty file"),
        (f'hash_type,hash_value\n\n\n"sha256","{GOOD_SHA}"\nsha256,"unterminated\n', r"line 5"),
    ],
)
def test_malformed_file_names_the_row_and_field_and_imports_nothing(
    store: HashListStore, tmp_path: Path, content: str, message: str
) -> None:
    store.add_text("partner", SLOGAN)
    before = store.get("partner")
    with pytest.raises(DataError, match=message):
        store.import_file("partner", _csv(tmp_path, content))
    assert store.get("partner") == before  # the good rows before the bad one were not imported


def test_file_that_is_not_utf8_names_the_line(store: HashListStore, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"hash_type,hash_value,note\nsha256,{GOOD_SHA},caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 2: not UTF-8"):
        store.import_file("partner", path)


# --- versioned lists and reloads ------------------------------------------------------------------


def test_every_change_bumps_the_list_version_and_the_index_version(store: HashListStore) -> None:
    versions = []
    first = store.add_text("local", PASSAGE)
    versions.append(_index(store).version)
    again = store.add_text("local", PASSAGE)  # nothing new: no new version
    assert (first.version, first.added, again.version, again.added, again.duplicates) == (1, 2, 1, 0, 2)
    assert _index(store).version == versions[-1]
    assert store.add_text("local", SLOGAN).version == 2
    versions.append(_index(store).version)
    slogan_id = store.get("local").entries[-1].hash_id
    assert store.remove("local", [slogan_id]).version == 3
    versions.append(_index(store).version)
    emptied = store.remove("local")
    assert (emptied.version, emptied.removed) == (4, 2)
    assert store.get("local").entries == () and store.list_ids() == ["local"]
    versions.append(_index(store).version)
    assert len(set(versions)) == len(versions)


def test_an_empty_store_is_the_empty_index(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    index = KnownContentIndex.load(tmp_path / "lists")
    assert index.version == KnownContentIndex.empty().version and index.lists == []


def test_remove_of_an_unknown_hash_removes_nothing(store: HashListStore) -> None:
    store.add_text("local", PASSAGE)
    kept = store.get("local")
    with pytest.raises(DataError, match="'sha256:0000' is not in list 'local': nothing removed"):
        store.remove("local", [kept.entries[0].hash_value, "sha256:0000"])
    assert store.get("local") == kept
    with pytest.raises(DataError, match="no hash list 'nope'"):
        store.remove("nope")


def test_invalid_list_ids_are_refused(store: HashListStore) -> None:
    for bad in ("", "Upper", "../escape", "a" * 65, "-lead"):
        with pytest.raises(DataError, match="list id"):
            store.add_text(bad, PASSAGE)


def test_writes_are_atomic_and_leave_no_temporary_files(store: HashListStore) -> None:
    store.add_text("local", PASSAGE)
    store.remove("local")
    names = sorted(path.name for path in store.directory.iterdir())
    assert names == [".lock", "local.json"]
    document = json.loads((store.directory / "local.json").read_text(encoding="utf-8"))
    assert document["format"] == "textguard-hash-list/1" and document["version"] == 2


def test_concurrent_writers_lose_nothing(store: HashListStore) -> None:
    texts = [f"{SLOGAN} number {index}" for index in range(12)]
    threads = [threading.Thread(target=store.add_text, args=("local", text)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listed = store.get("local")
    assert len(listed.entries) == 12 and listed.version == 12


def test_a_corrupt_list_file_is_named(store: HashListStore) -> None:
    store.add_text("local", PASSAGE)
    path = store.directory / "local.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["entries"][1]["hash_value"] = "xyz"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(DataError, match=r"local.json: entries\[1\]\.hash_value: a minhash value is 256"):
        KnownContentIndex.load(store.directory)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"local\.json: cannot be read as JSON"):
        KnownContentIndex.load(store.directory)
    with pytest.raises(DataError, match="does not exist"):
        KnownContentIndex.load(store.directory / "missing")


def test_one_list_file_can_be_loaded_alone(store: HashListStore) -> None:
    store.add_text("local", SLOGAN)
    store.add_text("other", PASSAGE)
    index = KnownContentIndex.load(store.directory / "local.json")
    assert [summary.list_id for summary in index.lists] == ["local"]
    assert _match(index, SLOGAN) == [("exact", "local")]


def test_reloader_picks_up_changes_and_keeps_the_last_good_index(store: HashListStore) -> None:
    store.add_text("local", PASSAGE)
    now = [0.0]
    reloader = KnownContentReloader(store.directory, check_interval_s=5.0, clock=lambda: now[0])
    first = reloader.index
    assert first.match(normalize(SLOGAN)) == []

    store.add_text("local", SLOGAN)
    now[0] = 4.0
    assert reloader.index is first  # not checked again before the interval
    now[0] = 5.0
    second = reloader.index
    assert second.version != first.version
    assert [match.list_version for match in second.match(normalize(SLOGAN))] == [2]
    now[0] = 10.0
    assert reloader.index is second  # nothing changed on disk: same index object

    (store.directory / "broken.json").write_text("{", encoding="utf-8")
    now[0] = 15.0
    assert reloader.index is second and "broken.json" in str(reloader.last_error)
    (store.directory / "broken.json").unlink()
    store.remove("local")
    now[0] = 20.0
    assert reloader.index.match(normalize(SLOGAN)) == [] and reloader.last_error is None
    with pytest.raises(DataError):
        KnownContentReloader(store.directory / "missing")
