"""The benchmarks are not tests: ``nox -s bench`` runs them, pytest never collects them."""

collect_ignore_glob = ["*"]
