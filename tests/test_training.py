"""Training on CPU with a tiny Llama built in code and SmolLM2's real tokenizer and chat template.

SFT and DPO run for real (TRL + PEFT), the loss falls on a memorisable set, adapters merge, save and
reload, runs resume, errors explain themselves, and the Pipes round trip reports metadata to Dagster.
Slow tests (opt-in, `-m slow`) convert the bundled 135M model and train it with the `quick` profile.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from resources import SettingsResource
from resources.training import (
    TrainingLauncher,
    docker_container_kwargs,
    ecs_run_task_params,
    trainer_command,
)
from twin_platform.prompts import chat_messages
from twin_platform.registry import CANDIDATE, ModelRegistry, model_name
from twin_platform.settings import load_settings
from twin_platform.training.config import (
    ALL_LINEAR,
    ModelSize,
    TrainingConfig,
    attention_implementation,
    needs_checkpointing,
    plan_run,
    profile,
    trainer_arguments,
)
from twin_platform.training.data import DatasetError, read_rows
from twin_platform.training.runner import TrainingError, TrainingResult

AUTHOR = "Ada"
FACTS = [
    (
        "What do you think of unit tests?",
        "Unit tests are a design tool first. Write them before the code.",
    ),
    ("How should I name modules?", "Name a module after what it does, never after a pattern."),
    (
        "Is caching worth it?",
        "Measure first. A cache hides a slow query until the day it does not.",
    ),
    (
        "Why use Postgres?",
        "Postgres does vectors, queues and JSON well enough to skip three services.",
    ),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def instruction_rows(repeat: int = 4) -> list[dict[str, Any]]:
    return [{"messages": chat_messages(q, AUTHOR, answer=a)} for q, a in FACTS] * repeat


def preference_rows(repeat: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "prompt": chat_messages(q, AUTHOR),
            "chosen": [{"role": "assistant", "content": a}],
            "rejected": [
                {"role": "assistant", "content": "As an AI language model, I cannot say."}
            ],
        }
        for q, a in FACTS
    ] * repeat


@pytest.fixture(scope="session")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    write_jsonl(root / "instruction" / "train.jsonl", instruction_rows())
    write_jsonl(root / "preference" / "train.jsonl", preference_rows())
    return {"sft": root / "instruction", "dpo": root / "preference"}


def tiny_config(
    stage: str, base: Path | str, data: Path, out: Path, **overrides: Any
) -> TrainingConfig:
    hp = profile(
        "quick",
        stage,  # type: ignore[arg-type]
        **{
            "learning_rate": 1e-2,
            "max_steps": 8,
            "per_device_train_batch_size": 4,
            "max_train_samples": None,
            "lora": {"r": 16, "alpha": 32, "target_modules": ALL_LINEAR},
            "save_steps": 5,
            "warmup_steps": 0,
            **overrides,
        },
    )
    return TrainingConfig(
        stage=stage,
        base_model=str(base),
        dataset_dir=data,
        output_dir=out,
        hyperparameters=hp,  # type: ignore[arg-type]
        report_to=[],
        registry=str(out.parent / "registry"),
        lineage={"author": AUTHOR},
        wandb_dir=load_settings().wandb_dir,
    )


@pytest.fixture(scope="session")
def sft_run(
    tiny_base: Path, data_dirs: dict[str, Path], twin_home: Path
) -> tuple[TrainingConfig, TrainingResult]:
    from twin_platform.training import sft

    config = tiny_config("sft", tiny_base, data_dirs["sft"], twin_home / "runs" / "sft")
    config.report_to = ["wandb"]  # offline under TWIN_HOME (conftest sets WANDB_MODE=offline)
    return config, sft.train(config)


def test_sft_loss_falls_and_merged_model_reloads(
    sft_run: tuple[TrainingConfig, TrainingResult], tiny_base: Path, twin_home: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, result = sft_run
    assert result.metrics["steps"] == 8
    assert result.metrics["final_loss"] < 0.7 * result.metrics["first_loss"]

    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_base), str(result.adapter_dir)
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    ids = tokenizer.apply_chat_template(
        chat_messages(FACTS[0][0], AUTHOR), add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        merged_logits, adapter_logits = merged(ids).logits, with_adapter(ids).logits
        base_logits = base(ids).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)  # training changed the model
    assert (result.merged_dir / "adapter" / "adapter_config.json").is_file()

    registry = ModelRegistry(config.registry)  # type: ignore[arg-type]
    version = registry.resolve("twin", CANDIDATE)
    assert version is not None and version.path == result.merged_dir
    lineage = version.manifest["lineage"]
    assert (
        lineage["stage"] == "sft"
        and lineage["base_model"] == str(tiny_base)
        and lineage["author"] == AUTHOR
    )
    assert len(lineage["dataset_version"]) == 16 and lineage["code_version"]
    assert version.manifest["config"]["hyperparameters"]["learning_rate"] == 1e-2
    assert list((twin_home / "wandb").glob("wandb/offline-run-*")), (
        "wandb should log offline under TWIN_HOME"
    )


def test_packed_sft_trains_through_the_runner(
    tiny_base: Path, data_dirs: dict[str, Path], twin_home: Path
) -> None:
    """The `full` profile's packing, on the runner's own path (SDPA on a CPU, flex on a GPU)."""
    from twin_platform.training import sft

    config = tiny_config(
        "sft",
        tiny_base,
        data_dirs["sft"],
        twin_home / "runs" / "sft-packed",
        packing=True,
        per_device_train_batch_size=2,
    )
    result = sft.train(config)
    assert result.metrics["steps"] == 8
    assert result.metrics["final_loss"] < 0.7 * result.metrics["first_loss"]


def test_same_config_reuses_the_finished_run(
    sft_run: tuple[TrainingConfig, TrainingResult],
) -> None:
    from twin_platform.training import sft

    config, first = sft_run
    again = sft.train(config)
    assert again.model_version == first.model_version
    assert len(ModelRegistry(config.registry).versions("twin")) >= 1  # type: ignore[arg-type]
    assert [v.version for v in ModelRegistry(config.registry).versions("twin")].count(
        first.model_version
    ) == 1  # type: ignore[arg-type]


def test_training_uses_the_serving_chat_template(
    tiny_base: Path, data_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """The tokens SFT trains on are exactly what the tokenizer's template (the API's) produces."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twin_platform.training import sft
    from twin_platform.training.data import load_dataset
    from twin_platform.training.runner import peft_config

    config = tiny_config("sft", tiny_base, data_dirs["sft"], tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    trainer = sft.make_trainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_base),
        tokenizer=tokenizer,
        dataset=load_dataset(config.dataset_dir, "sft"),
        peft_config=peft_config(config.hyperparameters),
        config=config,
        on_gpu=False,
        bf16_ok=False,
        gradient_checkpointing=False,
        output_dir=tmp_path / "ckpt",
        callbacks=[],
    )
    row = trainer.train_dataset[0]
    expected = tokenizer.apply_chat_template(
        chat_messages(FACTS[0][0], AUTHOR, answer=FACTS[0][1]), tokenize=False
    )
    assert tokenizer.decode(row["input_ids"]) == expected
    prompt = tokenizer.apply_chat_template(
        chat_messages(FACTS[0][0], AUTHOR), tokenize=False, add_generation_prompt=True
    )
    trained = tokenizer.decode([t for t in row["labels"] if t != -100])
    assert (
        expected.startswith(prompt) and trained == expected[len(prompt) :]
    )  # loss on the answer only


def test_dpo_from_sft_learns_preferences(
    sft_run: tuple[TrainingConfig, TrainingResult], data_dirs: dict[str, Path], twin_home: Path
) -> None:
    from twin_platform.training import dpo

    _, sft_result = sft_run
    config = tiny_config(
        "dpo",
        sft_result.merged_dir,
        data_dirs["dpo"],
        twin_home / "runs" / "dpo",
        learning_rate=5e-3,
        max_steps=6,
        beta=0.5,
    )
    config.lineage["parent"] = {"name": "twin", "version": sft_result.model_version}
    result = dpo.train(config)
    assert result.metrics["first_loss"] == pytest.approx(
        0.6931, abs=0.02
    )  # log 2: policy == reference
    assert result.metrics["final_loss"] < 0.5
    version = ModelRegistry(config.registry).resolve("twin", CANDIDATE)  # type: ignore[arg-type]
    assert (
        version is not None and version.version == result.model_version != sft_result.model_version
    )
    assert version.manifest["lineage"]["parent"]["version"] == sft_result.model_version


def test_interrupted_run_resumes_from_last_checkpoint(
    tiny_base: Path, data_dirs: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    from twin_platform.training import sft

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated kill")

    config = tiny_config(
        "sft", tiny_base, data_dirs["sft"], tmp_path / "run", max_steps=4, save_steps=2
    )
    with pytest.raises(KeyboardInterrupt):
        sft.train(config, callbacks=[Crash()])
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "run" / "result.json").exists()
    result = sft.train(config)
    assert result.metrics["resumed_from"] == "checkpoint-2" and result.metrics["steps"] == 4
    assert min(e["step"] for e in result.log_history if "loss" in e) == 1  # history carried over


def test_out_of_memory_suggests_what_to_change(
    tiny_base: Path, data_dirs: dict[str, Path], tmp_path: Path
) -> None:
    import torch
    from transformers import TrainerCallback

    from twin_platform.training import sft

    class OutOfMemory(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    config = tiny_config("sft", tiny_base, data_dirs["sft"], tmp_path / "run")
    with pytest.raises(TrainingError) as err:
        sft.train(config, callbacks=[OutOfMemory()])
    message = str(err.value)
    assert (
        "per_device_train_batch_size to 2" in message
        and "gradient_accumulation_steps to 2" in message
    )
    assert "qlora" in message and "gradient_checkpointing" in message


def test_missing_empty_or_malformed_dataset_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twin_platform.training import sft

    with pytest.raises(DatasetError, match="materialize `instruction_dataset`"):
        read_rows(tmp_path / "nowhere", "sft")
    write_jsonl(tmp_path / "empty" / "train.jsonl", [])
    with pytest.raises(DatasetError, match="is empty"):
        read_rows(tmp_path / "empty", "sft")
    write_jsonl(
        tmp_path / "bad" / "train.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}]
    )
    with pytest.raises(DatasetError, match="ending with an assistant turn"):
        read_rows(tmp_path / "bad", "sft")
    write_jsonl(
        tmp_path / "badpref" / "train.jsonl", [{"prompt": [], "chosen": [], "rejected": []}]
    )
    with pytest.raises(DatasetError, match="non-empty `prompt`"):
        read_rows(tmp_path / "badpref", "dpo")

    # The entrypoint fails before loading any model, with the message and a non-zero exit.
    config = tiny_config("sft", "unused", tmp_path / "empty", tmp_path / "out")
    (tmp_path / "run.json").write_text(config.to_json())
    with pytest.raises(SystemExit, match="is empty"):
        sft.main("sft", sft.make_trainer, ["--config", str(tmp_path / "run.json")])


def test_sft_asset_trains_through_pipes(
    tiny_base: Path, data_dirs: dict[str, Path], twin_home: Path
) -> None:
    """The real `sft_model` asset: the entrypoint runs in a subprocess launched through Dagster Pipes
    and reports logs, metrics, curves and the registered version back."""
    from assets.partitions import authors
    from assets.training import sft_model
    from twin_platform.datasets.artifact import DatasetArtifact
    from twin_platform.models.base_model import BaseModelInfo

    @dg.asset(name="base_model")
    def stub_base() -> BaseModelInfo:
        return BaseModelInfo("tiny", tiny_base, 3_000_000, "LlamaForCausalLM")

    @dg.asset(name="instruction_dataset", partitions_def=authors)
    def stub_dataset() -> DatasetArtifact:
        return DatasetArtifact("instruction", AUTHOR, "v-test", data_dirs["sft"])

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", [AUTHOR])
    run_config = {
        "profile": "quick",
        "max_steps": 3,
        "learning_rate": 1e-2,
        "max_train_samples": 16,
    }
    result = dg.materialize(
        [stub_base, stub_dataset, sft_model],
        resources={"settings": SettingsResource(), "training": TrainingLauncher()},
        instance=instance,
        partition_key=AUTHOR,
        run_config={"ops": {"sft_model": {"config": run_config}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("sft_model")[0].metadata
    assert metadata["steps"].value == 3 and metadata["final_loss"].value > 0
    assert "data:image/png;base64," in metadata["curves"].value
    assert metadata["lineage"].value["author"] == AUTHOR
    assert metadata["lineage"].value["dataset"]["version"] == "v-test"
    version = result.output_for_node("sft_model")
    assert (
        version.version == metadata["model_version"].value
        and (version.path / "config.json").is_file()
    )
    registry = ModelRegistry.from_settings(load_settings())
    assert version.name == model_name(AUTHOR)  # one registry model per author
    assert registry.get(version.name, version.version) == version
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == "loss_decreased" and check.passed
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("step 3/3" in line and "loss" in line for line in logs), "trainer logs reach Dagster"


def test_profiles_hold_the_reference_recipe() -> None:
    sft, dpo = profile("full", "sft"), profile("full", "dpo")
    assert (sft.lora.r, sft.lora.alpha, sft.lora.dropout, len(sft.lora.target_modules)) == (
        32,
        32,
        0.0,
        7,
    )
    assert (
        sft.learning_rate,
        sft.num_train_epochs,
        sft.max_length,
        sft.weight_decay,
        sft.warmup_steps,
    ) == (3e-4, 3, 2048, 0.01, 10)
    assert (
        sft.per_device_train_batch_size * sft.gradient_accumulation_steps == 16  # packed rows
        and sft.lr_scheduler_type == "linear"
    )
    assert (dpo.beta, dpo.learning_rate, dpo.num_train_epochs, dpo.max_length) == (
        0.5,
        2e-6,
        1,
        1024,
    )

    def arguments(hp: Any, stage: str = "sft", *, on_gpu: bool = True) -> dict[str, Any]:
        return trainer_arguments(
            hp,
            stage=stage,  # type: ignore[arg-type]
            output_dir=Path("x"),
            on_gpu=on_gpu,
            bf16_ok=on_gpu,
            gradient_checkpointing=on_gpu,
        )

    cpu = arguments(sft, on_gpu=False)
    assert (
        cpu["bf16"] is False and cpu["optim"] == "adamw_torch" and cpu["use_liger_kernel"] is False
    )
    gpu = arguments(sft)
    assert gpu["bf16"] and gpu["gradient_checkpointing"]
    # The profile packs: one flat row per micro-batch of a fixed length, read by flex attention.
    assert gpu["packing"] and gpu["packing_strategy"] == "bfd"
    assert gpu["pad_to_multiple_of"] == sft.per_device_train_batch_size * sft.max_length
    assert gpu["train_sampling_strategy"] == "random"
    assert attention_implementation(sft, on_gpu=True) == "flex_attention"
    assert attention_implementation(sft, on_gpu=False) is None
    grouped = profile("full", "sft", packing=False)
    assert arguments(grouped)["train_sampling_strategy"] == "group_by_length"
    assert "packing_strategy" not in arguments(grouped)
    assert attention_implementation(grouped, on_gpu=True) is None
    dpo_args = arguments(dpo, "dpo")
    assert "packing" not in dpo_args  # DPOConfig has no packing field
    assert (
        profile("full", "sft", lora={"r": 16}).lora.alpha == 32
    )  # partial overrides keep the rest
    with pytest.raises(ValueError, match="unknown training profile"):
        profile("huge", "sft")  # type: ignore[arg-type]


H200 = 143_771 * 2**20
H100 = 80 * 10**9
LLAMA_1B = ModelSize(parameters=1_235_814_400, layers=16, hidden=2048)
LLAMA_8B = ModelSize(parameters=8_030_261_248, layers=32, hidden=4096)


@pytest.mark.parametrize(
    ("stage", "model", "device_memory", "expected"),
    [
        ("sft", LLAMA_1B, H100, False),  # 17.5 GiB measured without checkpointing
        ("sft", LLAMA_8B, H200, False),  # 70 GiB measured: fits an H200
        ("sft", LLAMA_8B, H100, True),  # ... but not an 80 GB card
        ("dpo", LLAMA_1B, H100, False),  # 33.8 GiB measured at 8 pairs of 1,024 tokens
        ("dpo", LLAMA_8B, H200, True),
        ("sft", LLAMA_8B, None, False),  # CPU: memory is not the limit
    ],
)
def test_checkpointing_only_when_activations_outgrow_the_gpu(
    stage: str, model: ModelSize, device_memory: int | None, expected: bool
) -> None:
    hp = profile("full", stage)  # type: ignore[arg-type]
    assert (
        needs_checkpointing(hp, stage=stage, model=model, device_memory=device_memory) is expected
    )  # type: ignore[arg-type]
    forced = profile("full", stage, gradient_checkpointing=True)  # type: ignore[arg-type]
    assert needs_checkpointing(forced, stage=stage, model=model, device_memory=device_memory)  # type: ignore[arg-type]


def test_plan_run_keys_output_by_inputs(tmp_path: Path) -> None:
    def plan(**lineage: Any) -> TrainingConfig:
        return plan_run(
            "sft",
            profile_name="quick",
            overrides={},
            base_model="b",
            dataset_dir=tmp_path,
            runs_dir=tmp_path / "runs",
            registry=None,
            model_name="twin",
            lineage={"author": "ada", **lineage},
        )

    assert plan().output_dir == plan().output_dir  # a rerun resumes in the same folder
    assert plan(dataset={"version": "1"}).output_dir != plan(dataset={"version": "2"}).output_dir
    assert plan().output_dir.parent == tmp_path / "runs" / "sft" / "ada"


def test_gpu_launchers_ask_for_gpus() -> None:
    assert trainer_command("dpo", 4)[:4] == ["accelerate", "launch", "--num_processes", "4"]
    assert trainer_command("sft", 1, python="py") == ["py", "-m", "twin_platform.training.sft"]
    request = docker_container_kwargs(-1, ["/data:/data"], "16g")["device_requests"][0]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    params = ecs_run_task_params(
        cluster="c",
        task_definition="td",
        container="trainer",
        command=["x"],
        gpus=1,
        subnets=["s1"],
        security_groups=[],
    )
    override = params["overrides"]["containerOverrides"][0]
    assert params["launchType"] == "EC2" and override["resourceRequirements"] == [
        {"type": "GPU", "value": "1"}
    ]


def test_training_assets_are_in_the_gpu_pool() -> None:
    from definitions import defs

    graph = defs.resolve_asset_graph()
    for name in ("sft_model", "dpo_model"):
        node = graph.get(dg.AssetKey(name))
        assert (
            node.pools == {"gpu"}
            and node.group_name == "training"
            and node.partitions_def is not None
        )
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("dpo_model")).parent_keys} == {
        "sft_model",
        "preference_dataset",
    }


@pytest.mark.slow
def test_bundled_base_model_converts_once(twin_home: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twin_platform.models.base_model import prepare_base_model

    info = prepare_base_model(None, twin_home / "base_models")
    assert info.architecture == "LlamaForCausalLM" and 130e6 < info.parameters < 140e6
    assert prepare_base_model(None, twin_home / "base_models") == info  # cached
    tokenizer = AutoTokenizer.from_pretrained(info.path)
    assert (
        tokenizer.eos_token == "<|im_end|>"
        and "<|im_start|>assistant"
        in tokenizer.apply_chat_template(
            chat_messages("hi"), tokenize=False, add_generation_prompt=True
        )
    )
    AutoModelForCausalLM.from_pretrained(info.path)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_profile_trains_the_real_base_model(
    twin_home: Path, data_dirs: dict[str, Path]
) -> None:
    from twin_platform.models.base_model import prepare_base_model
    from twin_platform.training import dpo, sft

    info = prepare_base_model(None, twin_home / "base_models")
    runs = twin_home / "runs-quick"
    make = lambda stage, base, data: plan_run(  # noqa: E731
        stage,
        profile_name="quick",
        overrides={},
        base_model=str(base),
        dataset_dir=data,
        runs_dir=runs,
        registry=str(runs / "registry"),
        model_name="twin",
        lineage={"author": AUTHOR},
    )
    sft_result = sft.train(make("sft", info.path, data_dirs["sft"]))
    dpo_result = dpo.train(make("dpo", sft_result.merged_dir, data_dirs["dpo"]))
    assert sft_result.metrics["steps"] == 8 and dpo_result.metrics["steps"] == 3
    print(
        f"quick profile: SFT {sft_result.metrics['train_runtime_s']} s, DPO {dpo_result.metrics['train_runtime_s']} s"
    )


def test_a_model_trained_from_the_bundled_base_converts_to_a_gguf_llama_cpp_serves(
    tiny_base: Path, tmp_path: Path
) -> None:
    """The folder transformers makes of the bundled GGUF keeps its byte-level tokenizer: the same
    ids as llama.cpp reading the original, and llama.cpp's converter writes a vocabulary it can
    chat with (a SentencePiece one aborted llama.cpp at the first prompt)."""
    from gguf import GGUFReader
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from twin_platform.llm.local import bundled_gguf_path
    from twin_platform.llm.smoke_check import check_gguf
    from twin_platform.models.quantization import convert_to_gguf

    text = "In 2024 I rewrote 13,500 lines — naïve café code, 🚀 emoji\n\n```py\nx = 42\n```"
    original = Llama(str(bundled_gguf_path()), vocab_only=True, verbose=False)
    expected = original.tokenize(text.encode(), add_bos=False, special=True)
    ids = AutoTokenizer.from_pretrained(tiny_base)(text, add_special_tokens=False)["input_ids"]
    assert ids == expected

    gguf = convert_to_gguf(tiny_base, tmp_path / "tiny-f16.gguf")
    fields = GGUFReader(gguf).fields
    vocabulary = {
        key: bytes(fields[key].parts[-1]).decode()
        for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre")
    }
    assert vocabulary == {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm"}
    assert check_gguf(str(gguf)) is None


@pytest.mark.parametrize(
    "attention", ["sdpa", pytest.param("flex_attention", marks=pytest.mark.slow)]
)
def test_packed_sequences_do_not_attend_to_each_other(attention: str) -> None:
    """The `full` profile packs several rows into one: each must see only itself, as if alone."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM._from_config(config, attn_implementation=attention).eval()
    rows = [torch.randint(3, 256, (n,)).tolist() for n in (7, 9, 5)]
    # As SFTTrainer collates a packed micro-batch: one flat row, padded to the profile's fixed length.
    collate = DataCollatorForLanguageModeling(
        pad_token_id=0, padding_free=True, pad_to_multiple_of=32
    )
    batch = collate([{"input_ids": row} for row in rows])
    assert batch["input_ids"].shape == (1, 32) and "attention_mask" not in batch
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        start = 0
        for row in rows:
            alone = model(input_ids=torch.tensor([row])).logits[0]
            torch.testing.assert_close(
                packed[start : start + len(row)], alone, atol=1e-5, rtol=1e-4
            )
            start += len(row)
