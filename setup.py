"""Installs the genre_fairseq plugin and the trie_tools compiler."""
from setuptools import find_packages, setup

setup(
    name="genre_fairseq",
    version="0.1.0",
    description="Generative entity linking (GENRE / mGENRE) as a fairseq plugin with compiled prefix trees",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["genre_fairseq", "genre_fairseq.*", "trie_tools", "trie_tools.*"]),
    install_requires=[
        # PyPI's fairseq 0.12.2 cannot be imported on Python >= 3.11 (a dataclass
        # mutable-default error); ve-fairseq 0.12.3 is the same code, same import
        # name, with that fixed and wheels for cp311/cp312.
        "fairseq==0.12.2; python_version < '3.11'",
        "ve-fairseq==0.12.3; python_version >= '3.11'",
        # Lower bound: the checkpoint allow-list needs torch.serialization.add_safe_globals.
        # No upper bound here; CI pins the exact CPU wheel with .ci/constraints.txt.
        "torch>=2.4",
        "sentencepiece>=0.1.99",
        "marisa-trie>=1.1",
        "numpy>=1.22",
        "tqdm>=4.60",
        "orjson>=3.9",  # the Wikidata dump reader (trie_tools.wikidata): 2-3x faster JSON decoding
        "msgspec>=0.18",  # the Wikidata dump reader: decodes only the fields it keeps (README, Dependencies)
    ],
    extras_require={
        # babel: the Unicode CLDR names of the quickstart knowledge base (examples/quickstart).
        "test": ["pytest>=7", "hypothesis>=6.80", "babel>=2.12"],
    },
    entry_points={
        "console_scripts": [
            "genre-trie = trie_tools.cli:main",
            "genre-evaluate = genre_fairseq.evaluate:main",
            "genre-prepare = trie_tools.prepare:main",
            "genre-quickstart = genre_fairseq.quickstart:main",
        ],
    },
)
