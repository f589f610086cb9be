"""Synthetic custom-KB TSV (``entity_id<TAB>lang<TAB>name``) with Wikipedia-like names, for benchmarks.

Deterministic for a given ``--names`` and ``--seed``. About N / 2.5 entities (names per entity:
geometric, mean 2.5) in 9 languages: en, de, fr, es, it (Latin script), ru (Cyrillic), ar
(Arabic), zh and ja (CJK; ja also kana). What makes the names realistic for a prefix tree:

* lengths: 1-6 words, mostly 2-3 (CJK titles: a few characters without spaces); mean about 17
  characters, close to Wikipedia titles;
* words are Zipf-distributed over large pseudo-word vocabularies built from per-language
  syllables, with function words ("of", "der", "de", ...) between them;
* shared prefixes: person names share (Zipf-distributed) first names, titles begin with
  "List of" / "Liste der" / ..., years ("1998 ..."), or frequent words;
* an entity's names in several languages are often the same string (``Albert Einstein`` in en,
  de, fr, ...), and it has redirect-like extra names in its home language;
* titles are unique per language, as on Wikipedia: a repeated (lang, name) gets a
  "(disambiguator)" suffix ("(film)", "(Begriffsklärung)", "(1987)", "(Placename)"), and some
  names carry one anyway.

Vectorized with numpy object arrays: 10M names take well under a few minutes on one core.

    python benchmarks/make_names.py --names 10000000 --output /tmp/kb.tsv
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np

# code, share of names, script
LANGS = [("en", 0.30, "latin"), ("de", 0.12, "latin"), ("fr", 0.11, "latin"), ("es", 0.09, "latin"),
         ("it", 0.08, "latin"), ("ru", 0.09, "cyrillic"), ("ja", 0.07, "ja"), ("zh", 0.08, "zh"),
         ("ar", 0.06, "arabic")]

SYLLABLES = {
    "en": "ar bel ton son ing er ham ley wood ford mar ri an ston ell o a in ber ly wick sh th ch ter man den ver "
          "co la mi ro ta ne ke di pa vi lo se field bury ow ay ee ou br cl st gr".split(),
    "de": "sch berg stein burg ach en er hof bach dorf au ei ung ge hei mann kraft wald lich keit zu ke ber ri fel "
          "ner tz ü ö ä ß sta gen lin ha wer rei mün kir che".split(),
    "fr": "eau ois ville mont ier é è ç lle ette beau cour ch ain eur on gne rou sse la de mi ré té lou bois "
          "pierre ar se mar ti que gue ault".split(),
    "es": "ez os ción ía ña ll ero ado ita que gu ar al ca bri to ma rí ó é an ro sa de ja mo ri ta go za".split(),
    "it": "ino etti zza elli one ia gli sc ra to lo pa vi cco ggi ana ro mi à è an ti ma be ci no sa ve".split(),
    "ru": "ка ско ов ин ский ва ро ст ни ль ев ан ми ра то на го ли ще жи ч ц ы ё ая ое ий бо де ко ма пе "
          "се тр вл ал ек".split(),
    "ar": "ال مح مد عب د ر ي ن س ك لي ما حس ين عل ة ب ف ق ت و ه ش ز غ ص ض ط ظ ا م ح".split(),
}
PROPER_EXTRA = "son sen ski ić ov ard ick ey burg ton ez elli ier mann berg ov ová quist".split()
FUNCTION = {
    "en": "of the and in for on at".split(), "de": "der die des von und im am".split(),
    "fr": "de la le des du et en".split(), "es": "de la el del y los en".split(),
    "it": "di del della il la e in".split(), "ru": "в и на по из".split(), "ar": "في و من على".split(),
}
LIST_PREFIX = {"en": ["List of", "History of", "Geography of"], "de": ["Liste der", "Liste von", "Geschichte"],
               "fr": ["Liste des", "Liste de", "Histoire de"], "es": ["Anexo:", "Historia de"],
               "it": ["Lista di", "Storia di"], "ru": ["Список", "История"], "ar": ["قائمة", "تاريخ"],
               "zh": ["列表", "历史"], "ja": ["一覧", "歴史"]}
DISAMBIGUATORS = {
    "en": "film album song band footballer politician disambiguation river novel TV_series village singer "
          "company ship play game actor".split(),
    "de": "Film Begriffsklärung Album Fußballspieler Politiker Band Lied Roman Gemeinde Schiff Familienname".split(),
    "fr": "film homonymie album footballeur homme_politique chanson roman commune groupe navire".split(),
    "es": "película desambiguación álbum futbolista político canción banda novela municipio".split(),
    "it": "film disambigua album calciatore politico singolo gruppo_musicale romanzo".split(),
    "ru": "фильм значения альбом футболист песня группа роман река".split(),
    "ar": "فيلم توضيح ألبوم لاعب_كرة أغنية رواية".split(),
    "zh": "电影 消歧义 专辑 歌曲 足球运动员 小说 乐队".split(),
    "ja": "映画 曖昧さ回避 アルバム 楽曲 サッカー選手 小説 バンド".split(),
}
KATAKANA = [chr(c) for c in range(0x30A2, 0x30F3) if chr(c) not in "ァィゥェォッャュョヮヰヱ"] + ["ー"]
HIRAGANA_JOIN = ["の", "と", "な", ""]
ZH_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
ZH_TRANSLIT = "阿尔伯特爱因斯坦克里马丁诺威廉姆森约翰乔治亚历山大罗伯拉德维奇卡洛夫列宁托玛莎布朗格兰瑟"

# words per title: 1-6, mostly 2-3
K_LATIN = np.array([0.16, 0.36, 0.26, 0.12, 0.06, 0.04])
K_CJK = np.array([0.22, 0.42, 0.22, 0.09, 0.05])


def zipf_cdf(n: int, s: float, q: float = 2.7) -> np.ndarray:
    """Cumulative Zipf-Mandelbrot probabilities of ranks 0..n-1."""
    p = 1.0 / (np.arange(n, dtype=np.float64) + q) ** s
    c = np.cumsum(p)
    return c / c[-1]


def draw(cdf: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), cdf.size - 1)


def make_words(rng: np.random.Generator, syllables: Sequence[str], n: int, lengths=(1, 2, 3, 4),
               weights=(0.15, 0.45, 0.3, 0.1), min_chars: int = 2) -> List[str]:
    """n distinct pseudo-words of 1-4 syllables (at least ``min_chars``); syllables Zipf-distributed."""
    syl = np.array(syllables, dtype=object)
    cdf = zipf_cdf(len(syllables), 0.8, 1.5)
    out: Dict[str, None] = {}
    while len(out) < n:
        m = int((n - len(out)) * 1.5) + 100
        k = rng.choice(np.array(lengths), size=m, p=np.array(weights) / sum(weights))
        parts = syl[draw(cdf, rng, m * max(lengths)).reshape(m, max(lengths))]
        words = parts[:, 0].copy()
        for j in range(1, max(lengths)):
            words = words + np.where(k > j, parts[:, j], "")
        for w in words.tolist():
            if len(w) >= min_chars:
                out[w] = None
                if len(out) >= n:
                    break
    return list(out)


def cjk_chars(rng: np.random.Generator, n: int, lo: int = 0x4E00, hi: int = 0x9FA5) -> List[str]:
    return [chr(c) for c in rng.choice(np.arange(lo, hi + 1), size=n, replace=False)]


class Vocab:
    """Words of one kind, with Zipf sampling, in plain and separator-prefixed forms."""

    def __init__(self, words: Sequence[str], s: float, sep: str = " ") -> None:
        self.words = np.array(list(words), dtype=object)
        self.spaced = np.array([sep + w for w in words], dtype=object)
        self.cdf = zipf_cdf(len(words), s)

    def sample(self, rng: np.random.Generator, size: int, spaced: bool = False) -> np.ndarray:
        return (self.spaced if spaced else self.words)[draw(self.cdf, rng, size)]


def build_vocabularies(rng: np.random.Generator, scale: float) -> Dict[str, Dict[str, Vocab]]:
    """Per language: common words (and capitalized), proper nouns, first names, function words."""
    def size(n: int) -> int:
        return max(200, int(n * scale))

    voc: Dict[str, Dict[str, Vocab]] = {}
    all_latin = sorted({s for lang in ("en", "de", "fr", "es", "it") for s in SYLLABLES[lang]}) + PROPER_EXTRA
    proper_latin = [w.capitalize() for w in make_words(rng, all_latin, size(300_000), (2, 3, 4), (0.4, 0.45, 0.15))]
    first_latin = [w.capitalize() for w in make_words(rng, all_latin, size(8_000), (2, 3), (0.6, 0.4))]
    for lang in ("en", "de", "fr", "es", "it"):
        common = make_words(rng, SYLLABLES[lang], size(100_000))
        voc[lang] = {"common": Vocab(common, 1.05), "common_cap": Vocab([w.capitalize() for w in common], 1.05),
                     "proper": Vocab(proper_latin, 0.95), "first": Vocab(first_latin, 1.1),
                     "function": Vocab(FUNCTION[lang], 1.0)}
    for lang in ("ru", "ar"):
        common = make_words(rng, SYLLABLES[lang], size(80_000))
        proper = make_words(rng, SYLLABLES[lang], size(150_000), (2, 3, 4), (0.4, 0.45, 0.15))
        first = make_words(rng, SYLLABLES[lang], size(4_000), (2, 3), (0.6, 0.4))
        cap = (lambda w: w.capitalize()) if lang == "ru" else (lambda w: w)
        voc[lang] = {"common": Vocab(common, 1.05), "common_cap": Vocab([cap(w) for w in common], 1.05),
                     "proper": Vocab([cap(w) for w in proper], 0.95), "first": Vocab([cap(w) for w in first], 1.1),
                     "function": Vocab(FUNCTION[lang], 1.0)}
    han = cjk_chars(rng, 3000)
    zh_words = make_words(rng, han, size(120_000), (1, 2, 3), (0.2, 0.6, 0.2), min_chars=1)
    translit = make_words(rng, list(ZH_TRANSLIT), size(60_000), (2, 3, 4), (0.35, 0.45, 0.2))
    zh_given = make_words(rng, han[:800], size(20_000), (1, 2), (0.4, 0.6), min_chars=1)
    voc["zh"] = {"common": Vocab(zh_words, 1.0, ""), "translit": Vocab(translit, 0.95, "·"),
                 "surname": Vocab(list(ZH_SURNAMES), 1.2, ""), "given": Vocab(zh_given, 0.9, "")}
    kanji = han[:1500] + cjk_chars(rng, 500)
    ja_words = make_words(rng, kanji, size(80_000), (1, 2, 3), (0.15, 0.65, 0.2), min_chars=1)
    kata = make_words(rng, KATAKANA, size(100_000), (2, 3, 4, 5), (0.2, 0.35, 0.3, 0.15))
    voc["ja"] = {"common": Vocab(ja_words, 1.0, ""), "kata": Vocab(kata, 0.95, ""), "kata_dot": Vocab(kata, 0.95, "・"),
                 "join": Vocab(HIRAGANA_JOIN, 1.5, ""), "surname": Vocab(ja_words[:3000], 1.1, ""),
                 "given": Vocab(ja_words[3000:20000], 0.9, "")}
    for lang, words in DISAMBIGUATORS.items():
        voc.setdefault(lang, {})["disambig"] = Vocab([w.replace("_", " ") for w in words], 1.0)
        voc[lang]["list"] = Vocab(LIST_PREFIX[lang], 1.0)
    return voc


def choose(rng: np.random.Generator, n: int, p: Sequence[float]) -> np.ndarray:
    return rng.choice(len(p), size=n, p=np.asarray(p) / np.sum(p))


def plain_titles(rng: np.random.Generator, lang: str, script: str, v: Dict[str, Vocab], n: int) -> np.ndarray:
    """Titles of k words (k mostly 2-3): frequent words, proper nouns and function words."""
    if script in ("zh", "ja"):
        k = choose(rng, n, K_CJK) + 1
        out = v["common"].sample(rng, n) if script == "zh" else np.where(
            rng.random(n) < 0.3, v["kata"].sample(rng, n), v["common"].sample(rng, n))
        for j in range(1, int(k.max())):
            if script == "zh":
                word = v["common"].sample(rng, n)
            else:  # kanji words, katakana loanwords, joined by particles
                word = v["join"].sample(rng, n) + np.where(rng.random(n) < 0.3, v["kata"].sample(rng, n),
                                                           v["common"].sample(rng, n))
            out = out + np.where(k > j, word, "")
        return out
    k = choose(rng, n, K_LATIN) + 1
    first_proper = rng.random(n) < 0.4
    out = np.where(first_proper, v["proper"].sample(rng, n), v["common_cap"].sample(rng, n))
    cap_share = 0.5 if lang == "de" else 0.0
    for j in range(1, int(k.max())):
        r = rng.random(n)
        word = np.where(r < 0.4, v["proper"].sample(rng, n, True),
                        np.where(rng.random(n) < cap_share, v["common_cap"].sample(rng, n, True),
                                 v["common"].sample(rng, n, True)))
        func = (r > 0.82) & (k > j + 1)  # a function word, never last
        word = np.where(func, v["function"].sample(rng, n, True), word)
        out = out + np.where(k > j, word, "")
    return out


def person_names(rng: np.random.Generator, lang: str, script: str, v: Dict[str, Vocab], n: int) -> np.ndarray:
    """First name (shared, Zipf) + optional initial + surname(s); CJK: native or transliterated."""
    if script == "zh":
        native = v["surname"].sample(rng, n) + v["given"].sample(rng, n)
        foreign = v["translit"].sample(rng, n) + v["translit"].sample(rng, n, True)
        return np.where(rng.random(n) < 0.6, native, foreign)
    if script == "ja":
        native = v["surname"].sample(rng, n) + v["given"].sample(rng, n)
        foreign = v["kata"].sample(rng, n) + v["kata_dot"].sample(rng, n, True)
        return np.where(rng.random(n) < 0.5, native, foreign)
    out = v["first"].sample(rng, n)
    initial = np.array([" %s." % chr(c) for c in range(ord("A"), ord("Z") + 1)], dtype=object)
    if script == "latin":
        out = out + np.where(rng.random(n) < 0.08, initial[rng.integers(0, 26, n)], "")
    out = out + v["proper"].sample(rng, n, True)
    return out + np.where(rng.random(n) < 0.08, v["proper"].sample(rng, n, True), "")


def titles(rng: np.random.Generator, lang: str, script: str, voc: Dict[str, Dict[str, Vocab]], n: int) -> np.ndarray:
    """n titles in one language: persons, plain titles, "List of ..." and year-prefixed ones."""
    v = voc[lang]
    kind = choose(rng, n, [0.33, 0.55, 0.05, 0.07])  # person, plain, list, year
    out = np.empty(n, dtype=object)
    for which, make in ((0, person_names), (1, plain_titles)):
        idx = np.flatnonzero(kind == which)
        out[idx] = make(rng, lang, script, v, idx.size)
    idx = np.flatnonzero(kind == 2)
    body = plain_titles(rng, lang, script, v, idx.size)
    if script in ("zh", "ja"):
        out[idx] = body + v["list"].sample(rng, idx.size)
    else:
        out[idx] = v["list"].sample(rng, idx.size) + " " + body
    idx = np.flatnonzero(kind == 3)
    years = np.array([str(y) for y in range(1800, 2025)], dtype=object)[
        np.clip(2024 - 1800 - rng.geometric(0.03, idx.size), 0, 2024 - 1800)]
    body = plain_titles(rng, lang, script, v, idx.size)
    out[idx] = years + ("年" if script in ("zh", "ja") else " ") + body
    return out


def disambiguators(rng: np.random.Generator, lang: str, script: str, voc, n: int) -> np.ndarray:
    """" (film)", " (1987 film)", " (Placename)" ..."""
    v = voc[lang]
    word = v["disambig"].sample(rng, n)
    if script in ("latin", "cyrillic", "arabic"):
        place = v["proper"].sample(rng, n)
    elif script == "zh":
        place = v["common"].sample(rng, n)
    else:
        place = v["kata"].sample(rng, n)
    year = np.array([str(y) for y in range(1900, 2025)], dtype=object)[rng.integers(0, 125, n)]
    r = rng.random(n)
    inner = np.where(r < 0.55, word, np.where(r < 0.8, place, year + " " + word))
    return " (" + inner + ")"


class TakenNames:
    """64-bit hashes of the (language, name) pairs of earlier chunks, sorted: about 8 bytes a name.

    The hash is crc32 and adler32 of ``lang<TAB>name`` side by side (deterministic, unlike ``hash``);
    at 100M names a false "taken" is expected about once in 10^3 runs and only adds a disambiguator.
    """

    def __init__(self) -> None:
        self.hashes = np.zeros(0, dtype=np.uint64)

    @staticmethod
    def keys(lang: np.ndarray, names: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        out = np.empty(names.size, dtype=np.uint64)
        for i, (li, name) in enumerate(zip(lang.tolist(), names.tolist())):
            b = f"{codes[li]}\t{name}".encode()
            out[i] = zlib.crc32(b) | (zlib.adler32(b) << 32)
        return out

    def contains(self, keys: np.ndarray) -> np.ndarray:
        if self.hashes.size == 0:
            return np.zeros(keys.size, dtype=bool)
        pos = np.minimum(np.searchsorted(self.hashes, keys), self.hashes.size - 1)
        return self.hashes[pos] == keys

    def add(self, keys: np.ndarray) -> None:
        self.hashes = np.union1d(self.hashes, keys)


def generate(n: int, seed: int = 0, verbose: bool = True, *, voc=None, rng=None, taken: Optional[TakenNames] = None):
    """(entity index per name, language index per name, names, language codes) for n names; entities consecutive.

    For a chunk of a larger KB (``generate_chunks``): ``voc`` = the shared vocabularies, ``rng`` = the
    chunk's generator, ``taken`` = the names of earlier chunks, which count as repeats.
    """
    if rng is None:
        rng = np.random.default_rng(seed)
    t0 = time.time()
    if voc is None:
        voc = build_vocabularies(rng, scale=vocabulary_scale(n))
    if verbose:
        print(f"vocabularies: {time.time() - t0:.1f} s", file=sys.stderr)
    # Entities with geometric(0.4) names each (mean 2.5).
    per_entity = rng.geometric(0.4, size=int(n / 2.5 * 1.1) + 10)
    per_entity = per_entity[: int(np.searchsorted(np.cumsum(per_entity), n)) + 1]
    entity = np.repeat(np.arange(per_entity.size, dtype=np.int64), per_entity)[:n]
    first = np.zeros(n, dtype=np.int64)  # index of the entity's first name
    starts = np.flatnonzero(np.r_[True, entity[1:] != entity[:-1]])
    first[starts] = starts
    first = np.maximum.accumulate(first)
    slot0 = first == np.arange(n)
    shares = np.array([p for _, p, _ in LANGS])
    home = choose(rng, n, shares)
    lang = np.where(slot0 | (rng.random(n) < 0.45), home[first], choose(rng, n, shares))
    # Names are made per language; then later names copy the entity's first name across Latin languages.
    names = np.empty(n, dtype=object)
    for li, (code, _, script) in enumerate(LANGS):
        idx = np.flatnonzero(lang == li)
        names[idx] = titles(rng, code, script, voc, idx.size)
    latin = np.array([s == "latin" for _, _, s in LANGS])
    copy = ~slot0 & latin[lang] & latin[lang[first]] & (lang != lang[first]) & (rng.random(n) < 0.6)
    names[copy] = names[first[copy]]
    for li, (code, _, script) in enumerate(LANGS):
        idx = np.flatnonzero(lang == li)
        extra = idx[rng.random(idx.size) < 0.04]
        names[extra] = names[extra] + disambiguators(rng, code, script, voc, extra.size)
    if verbose:
        print(f"names: {time.time() - t0:.1f} s", file=sys.stderr)
    # Titles are unique per language: later duplicates get disambiguators, as on Wikipedia.
    codes = [c for c, _, _ in LANGS]
    seen = set()
    add = seen.add
    dup = []
    for i, key in enumerate(zip(lang.tolist(), names.tolist())):
        if key in seen:
            dup.append(i)
        else:
            add(key)

    def taken_before(rows: np.ndarray) -> List[int]:  # rows (not repeats within the chunk) taken by earlier chunks
        if taken is None or rows.size == 0:
            return []
        return rows[taken.contains(TakenNames.keys(lang[rows], names[rows], codes))].tolist()

    dup = sorted(dup + taken_before(np.setdiff1d(np.arange(n), np.array(dup, dtype=np.int64))))
    for round_ in range(6):
        idx = np.array(dup, dtype=np.int64)
        if verbose:
            print(f"uniqueness round {round_}: {idx.size:,} repeated titles, {time.time() - t0:.1f} s", file=sys.stderr)
        if idx.size == 0:
            break
        for li, (code, _, script) in enumerate(LANGS):
            sub = idx[lang[idx] == li]
            if round_ < 5:
                names[sub] = names[sub] + disambiguators(rng, code, script, voc, sub.size)
            else:  # the few left: a number, as "(2)"
                names[sub] = names[sub] + np.array([" (%d)" % (i + 2) for i in range(sub.size)], dtype=object)
        dup = []
        for i, key in zip(idx.tolist(), zip(lang[idx].tolist(), names[idx].tolist())):
            if key in seen:
                dup.append(i)
            else:
                add(key)
        dup = sorted(dup + taken_before(np.setdiff1d(idx, np.array(dup, dtype=np.int64))))
    del seen
    if taken is not None:
        taken.add(TakenNames.keys(lang, names, codes))
    return entity, lang, names, codes


def vocabulary_scale(n: int) -> float:
    return min(1.0, max(0.05, n / 2_000_000))


def generate_chunks(n: int, seed: int = 0, chunk: int = 2_000_000, verbose: bool = True):
    """``generate`` for n names in chunks of ``chunk`` names, so that memory stays bounded (about 0.5 GB per
    million names of a chunk, plus 8 bytes per name so far). Yields (entity, lang, names, codes) per chunk.

    All chunks share one set of vocabularies (those of an n-name KB) and continue the entity numbering;
    chunk c draws from ``default_rng([seed, c])``; a name taken by an earlier chunk is a repeat, as within
    a chunk. The output differs from ``generate(n, seed)`` (other random draws) but has its distribution,
    except that an entity's names all lie in one chunk.
    """
    voc = build_vocabularies(np.random.default_rng(seed), scale=vocabulary_scale(n))
    taken = TakenNames()
    offset = 0
    for c, a in enumerate(range(0, n, chunk)):
        m = min(chunk, n - a)
        entity, lang, names, codes = generate(m, seed, verbose=False, voc=voc,
                                              rng=np.random.default_rng([seed, c]), taken=taken)
        if verbose:
            print(f"chunk {c}: names {a:,}..{a + m - 1:,}", file=sys.stderr, flush=True)
        yield entity + offset, lang, names, codes
        offset += int(entity[-1]) + 1


def write_tsv(path: str, entity: np.ndarray, lang: np.ndarray, names: np.ndarray, codes: List[str],
              chunk: int = 1_000_000, mode: str = "w") -> None:
    code_col = np.array(["\t%s\t" % c for c in codes], dtype=object)
    with open(path, mode, encoding="utf-8", newline="\n") as f:
        for a in range(0, names.size, chunk):
            b = min(a + chunk, names.size)
            ent = np.array(["Q%d" % (e + 1) for e in entity[a:b].tolist()], dtype=object)
            f.write("\n".join((ent + code_col[lang[a:b]] + names[a:b]).tolist()) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=10_000_000, help="number of names (lines), default 10,000,000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=0, metavar="N",
                        help="generate and write N names at a time (bounded memory, for KBs of tens of millions "
                             "of names; other draws than without it); default 0: all at once")
    parser.add_argument("--output", required=True, help="TSV file to write")
    args = parser.parse_args(argv)
    if args.names < 1 or args.chunk < 0:
        parser.error("--names must be >= 1 and --chunk >= 0")
    t0 = time.time()
    gen_s = 0.0
    if args.chunk and args.chunk < args.names:
        parts = generate_chunks(args.names, args.seed, args.chunk)
    else:
        parts = (part for part in [None] for part in [generate(args.names, args.seed)])
    lengths, lang_count, entities, mode = [], None, 0, "w"
    while True:
        t = time.time()
        part = next(parts, None)
        gen_s += time.time() - t
        if part is None:
            break
        entity, lang, names, codes = part
        write_tsv(args.output, entity, lang, names, codes, mode=mode)
        mode = "a"
        lengths.append(np.fromiter((len(s) for s in names.tolist()), dtype=np.int32, count=names.size))
        counts = np.bincount(lang, minlength=len(codes))
        lang_count = counts if lang_count is None else lang_count + counts
        entities = int(entity[-1]) + 1
        del entity, lang, names, part
    total = time.time() - t0
    lengths = np.concatenate(lengths)
    share = lang_count / lengths.size
    chunked = f" in chunks of {args.chunk:,}" if args.chunk and args.chunk < args.names else ""
    print(f"{args.output}: {lengths.size:,} names, {entities:,} entities; "
          f"mean name length {lengths.mean():.1f} characters (median {int(np.median(lengths))}, "
          f"p95 {int(np.percentile(lengths, 95))}); languages "
          + ", ".join(f"{c} {s:.0%}" for c, s in zip(codes, share))
          + f"; generated in {gen_s:.1f} s, written in {total - gen_s:.1f} s{chunked}")

if __name__ == "__main__":
    main()
