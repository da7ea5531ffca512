"""What code sees and gets back in the local sandbox: the contract's behaviour end to end."""

from __future__ import annotations

import textwrap

import pytest

from agentkube.sandbox import ExecutionRequest, ExecutionResult, Limits, Sandbox
from agentkube.sandbox.local import LocalSandbox
from tests.sandbox.helpers import run

pytestmark = pytest.mark.sandbox


def test_local_sandbox_implements_the_contract(sandbox: LocalSandbox) -> None:
    assert isinstance(sandbox, Sandbox)


async def test_python_output_and_exit_code_come_back(sandbox: LocalSandbox) -> None:
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"
    result = await run(sandbox, code)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.killed_reason is None
    assert not result.truncated
    assert result.duration_ms > 0


async def test_an_uncaught_exception_prints_a_traceback_and_exits_1(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, "def f():\n    raise ValueError('boom')\nf()\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert 'File "<string>", line 3, in <module>' in result.stderr
    assert result.stderr.endswith("ValueError: boom\n")
    assert "_shim" not in result.stderr


async def test_a_syntax_error_is_reported_like_python_does(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, "print(1\n")
    assert result.exit_code == 1
    assert "SyntaxError" in result.stderr


async def test_sys_exit_with_a_message_prints_it_and_exits_1(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, "import sys\nsys.exit('bad input')")
    assert (result.exit_code, result.stderr) == (1, "bad input\n")


async def test_threads_and_atexit_handlers_finish_before_the_result(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import atexit, threading, time
        atexit.register(lambda: print('atexit'))
        def late():
            time.sleep(0.2)
            print('thread')
        threading.Thread(target=late).start()
        print('main')
        """
    )
    result = await run(sandbox, code)
    assert result.stdout == "main\nthread\natexit\n"


async def test_bash_runs_with_its_exit_code(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, "echo $((6 * 7)); echo oops >&2; exit 5", language="bash")
    assert (result.exit_code, result.stdout, result.stderr) == (5, "42\n", "oops\n")


async def test_long_bash_scripts_run_too(sandbox: LocalSandbox) -> None:
    code = "x=0\n" + "x=$((x + 1))\n" * 20_000 + "echo $x\n"
    assert len(code) > 128 * 1024  # longer than one argv string may be
    result = await run(sandbox, code, language="bash")
    assert result.stdout == "20000\n", result.stderr


async def test_a_signal_death_reports_128_plus_the_signal(sandbox: LocalSandbox) -> None:
    result = await run(sandbox, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)")
    assert result.exit_code == 128 + 15


async def test_input_files_env_and_output_files_round_trip(sandbox: LocalSandbox) -> None:
    code = textwrap.dedent(
        """
        import os
        from helper import greet
        data = open('data/in.txt').read()
        os.makedirs('out/sub', exist_ok=True)
        open('out/result.txt', 'w').write(greet(data) + os.environ['SUFFIX'])
        open('out/sub/n.txt', 'w').write('7')
        print(os.getcwd())
        """
    )
    request = ExecutionRequest(
        code=code,
        files={"data/in.txt": "world", "helper.py": "def greet(x):\n    return 'hello ' + x\n"},
        env={"SUFFIX": "!"},
    )
    result = await sandbox.execute(request)
    assert result.exit_code == 0, result.stderr
    assert result.files == {"result.txt": "hello world!", "sub/n.txt": "7"}
    assert result.stdout == "/tmp\n"


async def test_output_files_are_capped(sandbox: LocalSandbox) -> None:
    code = "open('out/big.txt', 'w').write('y' * 5000)"
    result = await sandbox.execute(ExecutionRequest(code=code, limits=Limits(output_bytes=1024)))
    assert result.files == {"big.txt": "y" * 1024}
    assert result.truncated


async def test_a_larger_memory_limit_is_honoured(sandbox: LocalSandbox) -> None:
    code = "b = bytearray(200 * 1024 * 1024)\nb[::4096] = b'x' * len(b[::4096])\nprint('ok')"
    small = await run(sandbox, code)
    large = await run(sandbox, code, memory_bytes=320 * 1024 * 1024)
    assert small.killed_reason == "memory"
    assert (large.killed_reason, large.stdout) == (None, "ok\n")


async def test_the_result_serialises_to_the_json_fields_of_the_contract(
    sandbox: LocalSandbox,
) -> None:
    result = await run(sandbox, "print('hi')")
    fields = set(ExecutionResult.model_validate_json(result.model_dump_json()).model_dump())
    assert fields == {
        "exit_code", "stdout", "stderr", "duration_ms", "killed_reason", "truncated", "files"
    }  # fmt: skip


async def test_a_closed_sandbox_refuses_work(sandbox: LocalSandbox) -> None:
    await sandbox.aclose()
    with pytest.raises(Exception, match="closed"):
        await sandbox.execute(ExecutionRequest(code="print(1)"))
