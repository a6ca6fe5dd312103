"""A refusal that is not a ValueError (the certificate's, an unsupported module) is one CLI line and exit 2."""

import argparse

import pytest

from bilrp import cli
from bilrp.canonizers import UnsupportedModuleError
from bilrp.certificate import CertificateError


@pytest.mark.parametrize(
    "error",
    [
        CertificateError("relevance refused: module 'encoder.mixer' (Softmax) is not affine under the rules"),
        UnsupportedModuleError("cannot explain module 'attn' of class MyAttention: write a canonizer"),
    ],
)
def test_refusals_are_one_line_and_exit_2(error, capsys):
    def fail(args):
        raise error

    args = argparse.Namespace(command="explain", func=fail, traceback=False)
    assert cli._run_command(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bilrp explain: error: ") and str(error) in err


def test_a_refusal_keeps_its_traceback_when_asked():
    def fail(args):
        raise CertificateError("refused")

    with pytest.raises(CertificateError):
        cli._run_command(argparse.Namespace(command="explain", func=fail, traceback=True))
