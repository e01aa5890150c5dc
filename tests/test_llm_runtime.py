"""The installed llama.cpp runs on any x86-64 CPU: built portably, and alive on long prompts.

A natively compiled llama.cpp detects the build machine's CPU: built where AMX is listed, it executes
AMX tile instructions that a VM which lists AMX but does not grant it kills with SIGILL, and only on
prompts long enough for a batched matrix product (short ones take another path). These tests would
have caught that: they look at the instructions in the installed libraries, and they generate from a
prompt of more than 600 tokens through the runtime the API and the datasets use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twin_platform.llm.factory import open_chat_model
from twin_platform.llm.options import LLMOptions
from twin_platform.llm.smoke_check import MIN_PROMPT_TOKENS, long_prompt

# AMX tile loads and dot products, and any instruction on a 512-bit register (AVX-512).
NOT_PORTABLE = re.compile(r"\b(tileloadd\w*|tdpb\w+|tdpfp16ps|tileconfig)\b|%zmm\d+")


def llama_libraries() -> list[Path]:
    import llama_cpp

    return sorted((Path(llama_cpp.__file__).parent / "lib").glob("*.so"))


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_llama_cpp_libraries_hold_no_amx_or_avx512_instruction() -> None:
    libraries = llama_libraries()
    assert any(p.name.startswith("libggml-cpu") for p in libraries), libraries
    for library in libraries:
        listing = subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", str(library)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = sorted({m.group(0) for m in NOT_PORTABLE.finditer(listing)})
        assert not found, f"{library.name} holds non-portable instructions: {found[:10]}"


def test_smoke_check_generates_from_a_long_prompt_in_a_child_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twin_platform.llm.smoke_check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    prompt_tokens = int(re.search(r"(\d+) prompt tokens", result.stdout).group(1))  # type: ignore[union-attr]
    assert prompt_tokens >= MIN_PROMPT_TOKENS


def test_datasets_llm_path_answers_a_long_prompt() -> None:
    """Dataset generation opens `twin-local/smollm2`, which runs the in-process model."""
    model = open_chat_model(LLMOptions(model="twin-local/smollm2"))
    prompt = long_prompt(model.count_tokens)
    result = model.chat(
        [{"role": "user", "content": prompt + "\nName the main topic in three words."}],
        max_tokens=8,
        temperature=0.0,
    )
    assert result.prompt_tokens >= MIN_PROMPT_TOKENS
    assert result.completion_tokens > 0 and result.text.strip()
