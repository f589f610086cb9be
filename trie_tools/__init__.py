"""trie_tools: compile knowledge bases into the name tables and prefix trees genre_fairseq reads."""
