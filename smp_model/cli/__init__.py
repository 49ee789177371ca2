"""The ``smp`` command line: the parser and entry point (`command`), shared argument types
(`arguments`) and one module per subcommand (``fit``, ``batch``, ``simulate``,
``validate``, ``discover``, ``cutout``), each with ``register(subparsers)`` and
``run(args) -> int``.
"""
from .command import main

__all__ = ["main"]
