"""What the tests, the benchmarks, `make demo` and the image test share: the fake products
service, throw-away databases, the service started as its own processes, and the check that
the books balance. Development only: not part of the installed package."""
