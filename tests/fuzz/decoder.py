"""Coverage-guided fuzzing of the message decoder with atheris (libFuzzer).

    python tests/fuzz/decoder.py -runs=1000000          # or -max_total_time=600
    python tests/fuzz/decoder.py corpus/ -runs=100000   # keep what it finds in corpus/

Every input must decode to a Message or raise MalformedMessage; anything else is a crash
that atheris reports with the input that caused it. tests/fuzz/test_decoder.py runs this
briefly in the test suite; run it longer by hand after changing message.py or signing.py.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from conveyor.message import MalformedMessage, decode_message
    from conveyor.signing import InvalidSignature, verified


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(InvalidSignature):
        verified(data, ("fuzz-key",))
    with contextlib.suppress(MalformedMessage):
        decode_message(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
