"""Labelled data: raw public datasets and the seed set -> prepared train/validation/test folders.

Modules, each with one job (nothing heavy is imported here):

- dataconfig: the data-config schema (`configs/data/*.yaml`) and its loader
- readers: CSV, TSV, JSON lines, Parquet, text-file folders, hub datasets -> located records
- labelling: the declarative source-label -> taxonomy mapping
- sources: one dataset's sources -> examples (joins, clean-ups, normalize(), ids, split hints)
- langid, dedup, splits, caption_view: language identification, duplicates, splits, caption copies
- prepare: `prepare(config) -> report`, the pipeline that ties them together
- prepared: the prepared-folder contract, `load_prepared(path) -> datasets.DatasetDict`
- cards: data cards from a prepared folder, its config and SOURCE.md
"""
