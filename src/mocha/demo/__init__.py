"""`mocha demo`: the whole MOCHA recipe on the embedded default world, with content-cached stages."""
