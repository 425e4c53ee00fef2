"""A Cortex request handler in the seed's shape: GPT-2's byte-level BPE tokenizer in plain Python.

pre_inference turns a sample's text into GPT-2 token ids for the model; post_inference turns the ids the
model returns (the prompt followed by its continuation) back into text. Other fields of the sample
(max_tokens, temperature, top_k, top_p, seed, stop) are generation parameters; they apply as they are.

The vocabulary is read from the model's folder (metadata["model"]["path"]): encoder.json and vocab.bpe
(OpenAI's names) or vocab.json and merges.txt (Hugging Face's), or else from this file's folder or its
model/ folder. Needs the `regex` module (Debian: python3-regex) for Unicode classes in the pre-tokenizer.
"""

import json
import os
import threading

import regex

# How GPT-2 cuts text into words before BPE: English contractions, runs of letters, runs of digits, runs
# of other symbols (each optionally after one space), and whitespace (a run that is followed by a word
# leaves its last space to that word).
WORD_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def byte_alphabet():
    """GPT-2 spells each byte as one printable character: printable Latin-1 bytes stand for themselves,
    the other 68 bytes (controls, space, a few Latin-1 gaps) take the characters from U+0100 up, in
    byte order. Returns the 256 characters, indexed by byte."""
    printable = set(range(ord("!"), ord("~") + 1))
    printable |= set(range(ord("\u00a1"), ord("\u00ac") + 1))
    printable |= set(range(ord("\u00ae"), ord("\u00ff") + 1))
    alphabet = []
    spare = 0x100
    for byte in range(256):
        if byte in printable:
            alphabet.append(chr(byte))
        else:
            alphabet.append(chr(spare))
            spare += 1
    return alphabet


class Tokenizer:
    def __init__(self, vocabulary_file, merges_file):
        with open(vocabulary_file, encoding="utf-8") as f:
            self.token_ids = json.load(f)
        self.token_texts = {i: t for t, i in self.token_ids.items()}
        self.merge_rank = {}
        with open(merges_file, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#version"):
                    continue
                left, right = line.split(" ")
                self.merge_rank.setdefault((left, right), len(self.merge_rank))
        self.alphabet = byte_alphabet()
        self.byte_of = {c: b for b, c in enumerate(self.alphabet)}
        self.word_cache = {}
        self.lock = threading.Lock()

    def split_word(self, word):
        """BPE on one word (in the byte alphabet): start from single characters and keep merging the
        adjacent pair that was learned earliest (every occurrence of it, left to right) until no adjacent
        pair is a learned merge."""
        parts = list(word)
        while len(parts) > 1:
            ranked = [
                (self.merge_rank[pair], pair)
                for pair in zip(parts, parts[1:])
                if pair in self.merge_rank
            ]
            if not ranked:
                break
            _, (left, right) = min(ranked)
            merged = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def encode(self, text):
        ids = []
        for match in WORD_PATTERN.finditer(text):
            word = "".join(self.alphabet[b] for b in match.group().encode("utf-8"))
            pieces = self.word_cache.get(word)
            if pieces is None:
                pieces = [self.token_ids[p] for p in self.split_word(word)]
                with self.lock:
                    if len(self.word_cache) > 100000:
                        self.word_cache.clear()
                    self.word_cache[word] = pieces
            ids.extend(pieces)
        return ids

    def decode(self, ids):
        spelled = "".join(self.token_texts[int(i)] for i in ids)
        raw = bytes(self.byte_of[c] for c in spelled)
        # A character cut at the end, or bytes that are not UTF-8, become U+FFFD, as the built-in does.
        return raw.decode("utf-8", errors="replace")


VOCABULARY_NAMES = [("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")]

_tokenizer = None
_tokenizer_lock = threading.Lock()


def find_vocabulary(metadata):
    here = os.path.dirname(os.path.abspath(__file__))
    folders = []
    model = (metadata or {}).get("model", {}).get("path")
    if model:
        folders.append(model if os.path.isdir(model) else os.path.dirname(model))
    folders += [here, os.path.join(here, "model")]
    for folder in folders:
        for vocabulary, merges in VOCABULARY_NAMES:
            v, m = os.path.join(folder, vocabulary), os.path.join(folder, merges)
            if os.path.isfile(v) and os.path.isfile(m):
                return v, m
    raise RuntimeError(
        "no GPT-2 vocabulary (encoder.json and vocab.bpe, or vocab.json and merges.txt) in "
        + ", ".join(folders)
    )


def tokenizer(metadata):
    global _tokenizer
    if _tokenizer is None:
        with _tokenizer_lock:
            if _tokenizer is None:
                _tokenizer = Tokenizer(*find_vocabulary(metadata))
    return _tokenizer


def pre_inference(sample, metadata):
    if not isinstance(sample, dict) or not isinstance(sample.get("text"), str):
        raise ValueError('text: each sample needs a "text" string')
    return {"context": [tokenizer(metadata).encode(sample["text"])]}


def post_inference(prediction, metadata):
    return tokenizer(metadata).decode(prediction["response"]["sample"])
