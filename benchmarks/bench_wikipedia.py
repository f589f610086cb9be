"""Benchmark ``genre-trie anchors``: pages/s and peak memory on a synthetic Wikipedia dump, 1 and 2 workers.

The dump is a MediaWiki export of N articles (plus one redirect per three articles) whose wikitext
imitates English articles: an infobox (nested templates), paragraphs with a link every ~120
characters (piped links, link trails, section links), ``<ref>`` citations with templates, a table,
a file with a caption, headings, lists, categories and interlanguage links. Article sizes are
log-normal with a mean of about 9 KB of wikitext: enwiki's pages-articles XML is about 90 GB
uncompressed for 6.8M articles and the pages of other namespaces, i.e. roughly 9 KB per article.

CPU seconds (user + system) of the main process and of the workers are reported too: on a shared
machine with autogroup scheduling, wall time under load says little about scaling, while the main
process's share of the CPU bounds it (N workers cannot go faster than the main process alone).

Each setting runs in a fresh process (``genre-trie anchors`` in-process via its ``main``), so its
peak RSS is its own; children's peak is reported separately for --workers 2. The projection for
the full English dump divides 6.8M articles (the figure used here; enwiki, 2024) by the measured
articles/s. The same pages are also parsed by mwparserfromhell (if installed), to compare.

    python benchmarks/bench_wikipedia.py --pages 1000 --repeat 3 --bz2
"""
import argparse
import bz2
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

ENWIKI_ARTICLES = 6_800_000
WORDS = ("the of and in to a was is for on as by with he at from his an were are which this also be had "
         "first one their its new after two has who city war world national state university river "
         "album film team season church school french german population government district").split()


def _sentence(rng: random.Random, titles) -> str:
    words = []
    for _ in range(rng.randint(8, 30)):
        r = rng.random()
        if r < 0.06:
            t = rng.choice(titles)
            words.append(f"[[{t}|{rng.choice(WORDS)} {rng.choice(WORDS)}]]")
        elif r < 0.09:
            words.append(f"[[{rng.choice(titles).lower()}]]s")
        elif r < 0.10:
            words.append(f"[[{rng.choice(titles)}#History|{rng.choice(WORDS)}]]")
        elif r < 0.11:
            words.append(f"'''{rng.choice(WORDS)}'''")
        else:
            words.append(rng.choice(WORDS))
    s = " ".join(words).capitalize() + "."
    if rng.random() < 0.3:
        s += (f"<ref>{{{{cite web|title={rng.choice(WORDS)}|url=https://example.org/{rng.randint(1, 10**6)}"
              f"|date=2020|publisher=[[{rng.choice(titles)}]]}}}}</ref>")
    return s


def article(rng: random.Random, title: str, titles) -> str:
    """Wikitext of one synthetic article of log-normal size (mean ~9 KB)."""
    target = int(rng.lognormvariate(8.6, 0.8))
    parts = ["{{Short description|A thing}}\n{{Infobox settlement\n| name = " + title +
             "\n| country = {{flag|[[" + rng.choice(titles) + "]]}}\n| population = {{formatnum:12345}}\n}}\n"]
    size = len(parts[0])
    while size < target:
        r = rng.random()
        if r < 0.1:
            block = f"\n== {rng.choice(WORDS).capitalize()} ==\n"
        elif r < 0.15:
            block = "\n".join(f"* {_sentence(rng, titles)}" for _ in range(3)) + "\n"
        elif r < 0.18:
            block = ("{| class=\"wikitable\"\n|-\n! Year !! Title\n" +
                     "".join(f"|-\n| {1900 + i} || [[{rng.choice(titles)}]]\n" for i in range(5)) + "|}\n")
        elif r < 0.2:
            block = f"[[File:Img{rng.randint(1, 999)}.jpg|thumb|A view of [[{rng.choice(titles)}]]]]\n"
        else:
            block = " ".join(_sentence(rng, titles) for _ in range(rng.randint(2, 6))) + "\n\n"
        parts.append(block)
        size += len(block)
    parts.append("\n{{Reflist}}\n[[Category:Things]]\n[[de:" + title + "]]\n")
    return "".join(parts)


def make_dump(path: str, n: int, seed: int = 0) -> int:
    """Write a synthetic dump of ``n`` articles (and n/3 redirects) to ``path``; return its size in bytes."""
    from xml.sax.saxutils import escape

    rng = random.Random(seed)
    titles = [f"Title {i}" for i in range(n)]
    with open(path, "w", encoding="utf-8") as f:
        f.write('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="en">\n'
                "  <siteinfo>\n    <dbname>enwiki</dbname>\n    <namespaces>\n"
                '      <namespace key="0" case="first-letter" />\n'
                '      <namespace key="6" case="first-letter">File</namespace>\n'
                '      <namespace key="14" case="first-letter">Category</namespace>\n'
                "    </namespaces>\n  </siteinfo>\n")
        for i, title in enumerate(titles):
            f.write(f"  <page>\n    <title>{title}</title>\n    <ns>0</ns>\n    <id>{i + 1}</id>\n"
                    f"    <revision>\n      <id>{i + 1}</id>\n      <text xml:space=\"preserve\">"
                    f"{escape(article(rng, title, titles))}</text>\n    </revision>\n  </page>\n")
            if i % 3 == 0:
                f.write(f"  <page>\n    <title>Alias {i}</title>\n    <ns>0</ns>\n    <id>{n + i + 1}</id>\n"
                        f"    <redirect title=\"{title}\" />\n    <revision>\n      <id>{n + i + 1}</id>\n"
                        f"      <text xml:space=\"preserve\">#REDIRECT [[{title}]]</text>\n    </revision>\n"
                        "  </page>\n")
        f.write("</mediawiki>\n")
    return os.path.getsize(path)


def run_one(dump: str, workers: int, out: str) -> dict:
    """Child process: convert the dump with ``genre-trie anchors``; report time and peak memory."""
    from trie_tools.cli import main

    stats = out + ".stats.json"
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime  # imports (torch, via the command's module) not counted
    start = time.perf_counter()
    rc = main(["anchors", "--dump", dump, "--lang", "en", "--output", out, "--workers", str(workers),
               "--stats", stats, "--quiet"])
    seconds = time.perf_counter() - start
    counts = json.load(open(stats))
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_main": me.ru_utime + me.ru_stime - cpu_before, "cpu_workers": kids.ru_utime + kids.ru_stime,
            "rc": rc, "seconds": seconds, "articles": counts["articles"], "records": counts["records"],
            "links_kept": counts["links_kept"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def mwparser_rate(dump: str, limit: int) -> dict:
    """Pages/s of our converter and of mwparserfromhell (parse + strip_code + walk links) on the same pages."""
    from trie_tools.wikipedia_xml import iter_pages, parse_wikitext

    pages = [p.text for p in iter_pages(dump) if p.redirect is None][:limit]
    start = time.perf_counter()
    for text in pages:
        parse_wikitext(text)
    ours = len(pages) / (time.perf_counter() - start)
    result = {"pages": len(pages), "ours_pages_per_s": ours}
    try:
        import mwparserfromhell
    except ImportError:
        return result
    start = time.perf_counter()
    for text in pages:
        code = mwparserfromhell.parse(text)
        code.filter_wikilinks()
        code.strip_code()
    result["mwparserfromhell_pages_per_s"] = len(pages) / (time.perf_counter() - start)
    result["mwparserfromhell_version"] = mwparserfromhell.__version__
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=3000, help="articles in the synthetic dump")
    ap.add_argument("--workers", default="1,2", help="worker counts to measure")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting; the fastest is reported (shared machine)")
    ap.add_argument("--bz2", action="store_true", help="also measure the bz2-compressed dump (decompression cost)")
    ap.add_argument("--child", nargs=3, metavar=("DUMP", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]), args.child[2])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "enwiki-synthetic.xml")
        size = make_dump(dump, args.pages)
        print(f"synthetic dump: {args.pages:,} articles, {size / 1e6:.1f} MB, {size / args.pages / 1e3:.1f} KB per "
              f"article (with page XML); machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        dumps = [("xml", dump)]
        if args.bz2:
            with open(dump, "rb") as f, open(dump + ".bz2", "wb") as g:
                g.write(bz2.compress(f.read(), 9))
            dumps.append(("xml.bz2", dump + ".bz2"))
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, PYTHONPATH=os.path.join(here, os.pardir))
        for kind, path in dumps:
            for w in [int(x) for x in args.workers.split(",")]:
                runs = []
                for _ in range(args.repeat):
                    load = os.getloadavg()[0]
                    out = subprocess.run([sys.executable, __file__, "--child", path, str(w),
                                          os.path.join(tmp, "o.jsonl")],
                                         check=True, capture_output=True, text=True, env=env).stdout
                    runs.append(dict(json.loads(out.strip().splitlines()[-1]), load=load))
                r = min(runs, key=lambda x: x["seconds"])
                times = ", ".join(f"{x['seconds']:.1f}" for x in runs)
                loads = ", ".join(f"{x['load']:.1f}" for x in runs)
                rate = r["articles"] / r["seconds"]
                cpu = r["cpu_main"] + r["cpu_workers"]
                print(f"{kind:8s} workers={w}: CPU {cpu:.1f} s ({r['articles'] / cpu:,.0f} articles per CPU-second; "
                      f"main process {r['cpu_main']:.1f} s, workers {r['cpu_workers']:.1f} s)")
                print(f"{kind:8s} workers={w}: {r['articles']:,} articles in {r['seconds']:.1f} s = {rate:,.0f} "
                      f"articles/s; {r['records']:,} records, {r['links_kept']:,} links; peak RSS main "
                      f"{r['peak_rss_mb']:.0f} MiB, largest child {r['children_peak_rss_mb']:.0f} MiB; "
                      f"full enwiki ({ENWIKI_ARTICLES / 1e6:.1f}M articles): {ENWIKI_ARTICLES / rate / 3600:.1f} h "
                      f"(best of {len(runs)}: {times} s; load before {loads})")
        m = mwparser_rate(dump, min(args.pages, 500))
        line = f"parser only, {m['pages']} pages: ours {m['ours_pages_per_s']:,.0f} pages/s"
        if "mwparserfromhell_pages_per_s" in m:
            line += (f"; mwparserfromhell {m['mwparserfromhell_version']} (parse + filter_wikilinks + strip_code) "
                     f"{m['mwparserfromhell_pages_per_s']:,.0f} pages/s")
        print(line)


if __name__ == "__main__":
    main()
