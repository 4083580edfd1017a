"""Models larger than one device (issue 17, item 3): device_map, max_memory and the dtype in the cache key.

There is no second device on the test machines, so the placement path is
proven on CPU: `device_map={"": "cpu"}` and `device_map=auto` (accelerate's
planner, which finds only the CPU here) load through accelerate's big-model
path, are never moved afterwards, and score exactly as the plain path does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunegate.backends.hf import HFBackend, parse_options
from tunegate.core.cache import cache_key
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest

pytestmark = pytest.mark.slow

PAIRS = [
    ("Question: What is the capital of France? Answer:", " Paris."),
    ("", "The quick brown fox jumps over the lazy dog."),
    ("Please restart the router,", " wait thirty seconds, and try again."),
]
PROMPTS = ["The customer asked", "Thank you for contacting", "Sure! Here are"]


@pytest.fixture(scope="module")
def plain(tiny_llama_dir: Path) -> HFBackend:
    return HFBackend(ModelSpec(model=str(tiny_llama_dir), batch_size=4))


def _answers(backend: HFBackend) -> tuple[list[float | None], list[str | None]]:
    lls = [r.loglikelihood for r in backend.loglikelihood([LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS])]
    texts = [r.text for r in backend.generate([GenerateRequest(prompt=p, max_new_tokens=8) for p in PROMPTS])]
    return lls, texts


@pytest.mark.parametrize("device_map", [{"": "cpu"}, "auto", {"model": "cpu", "lm_head": "cpu"}])
def test_device_map_loads_without_moving_and_scores_like_the_plain_path(
        tiny_llama_dir: Path, plain: HFBackend, device_map: object, monkeypatch: pytest.MonkeyPatch) -> None:
    moved: list[object] = []
    original_to = torch.nn.Module.to

    def spy_to(self: torch.nn.Module, *args: object, **kwargs: object) -> torch.nn.Module:
        moved.append(args)
        return original_to(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.nn.Module, "to", spy_to)
    placed = HFBackend(ModelSpec(model=str(tiny_llama_dir), batch_size=4, options={"device_map": device_map}))
    monkeypatch.undo()
    assert not [a for a in moved if a and isinstance(a[0], (str, torch.device))], "a device_map model was moved"
    assert placed.device == torch.device("cpu")
    assert placed.identity()["placement"]["device_map"] == device_map
    assert set(placed.identity()["placement"]["parameters_per_device"]) == {"cpu"}
    want_ll, want_text = _answers(plain)
    got_ll, got_text = _answers(placed)
    assert got_ll == pytest.approx(want_ll, abs=1e-6)
    assert got_text == want_text
    # same weights, same dtype, same device type: the cache serves either path's answers to the other
    assert placed.cache_settings() == plain.cache_settings()
    assert placed.fingerprint() == plain.fingerprint()


def test_modules_spread_over_two_devices_are_dispatched_with_hooks_and_score_the_same(
        tiny_llama_dir: Path, plain: HFBackend, tmp_path: Path) -> None:
    """The multi-device path on one CPU: the LM head lives on disk and accelerate's hooks bring it in per forward."""
    placed = HFBackend(ModelSpec(model=str(tiny_llama_dir), batch_size=4, options={
        "device_map": {"model": "cpu", "lm_head": "disk"}, "offload_folder": str(tmp_path / "offload")}))
    where = placed.identity()["placement"]
    assert where["dispatched"] is True and set(where["parameters_per_device"]) == {"cpu", "offloaded"}
    assert placed.device == torch.device("cpu")  # inputs go where the embedding is, not to the offloaded head
    want_ll, want_text = _answers(plain)
    got_ll, got_text = _answers(placed)
    assert got_ll == pytest.approx(want_ll, abs=1e-6)
    assert got_text == want_text


def test_max_memory_is_passed_to_the_planner(tiny_llama_dir: Path, plain: HFBackend, tmp_path: Path) -> None:
    """A budget too small for the whole model makes `auto` offload part of it, and the answers do not change."""
    placed = HFBackend(ModelSpec(model=str(tiny_llama_dir), batch_size=4, options={
        "device_map": "auto", "max_memory": {"cpu": 20_000}, "offload_folder": str(tmp_path / "offload")}))
    assert "offloaded" in placed.identity()["placement"]["parameters_per_device"]
    assert _answers(placed)[0] == pytest.approx(_answers(plain)[0], abs=1e-6)


def test_dtype_is_resolved_recorded_and_part_of_the_cache_key(tiny_model_dir: Path) -> None:
    fp32 = HFBackend(ModelSpec(model=str(tiny_model_dir)))  # auto on CPU: float32
    bf16 = HFBackend(ModelSpec(model=str(tiny_model_dir), options={"torch_dtype": "bfloat16"}))
    assert fp32.cache_settings()["dtype"] == "float32" and fp32.identity()["dtype"] == "float32"
    assert bf16.cache_settings()["dtype"] == "bfloat16" and bf16.identity()["dtype"] == "bfloat16"
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert fp32.fingerprint() == bf16.fingerprint()  # same weights ...
    req = LoglikelihoodRequest(context="Hello", continuation=" world")
    # ... yet never the same cached answer
    assert cache_key(fp32.fingerprint(), fp32.cache_settings(), req) != cache_key(bf16.fingerprint(), bf16.cache_settings(), req)
    assert HFBackend(ModelSpec(model=str(tiny_model_dir), dtype="bfloat16")).cache_settings() == bf16.cache_settings()


def test_run_provenance_records_the_resolved_dtype(tiny_model_dir: Path) -> None:
    from tunegate.run.evaluate import evaluate

    result = evaluate(ModelSpec(model=str(tiny_model_dir), options={"torch_dtype": "bfloat16"}), ["support_text"],
                      cache_path=None)
    assert result.provenance.model_dump()["dtype"] == "bfloat16"
    assert result.model_identity["dtype"] == "bfloat16"


@pytest.mark.parametrize(("spec", "message"), [
    ({"options": {"device_map": "everywhere"}}, "device_map"),
    ({"options": {"max_memory": {"cpu": "1GiB"}}}, "only applies with device_map"),
    ({"options": {"offload_folder": "/tmp/x"}}, "only applies with device_map"),
    ({"options": {"device_map": "auto"}, "device": "cpu"}, "give one of them"),
    ({"options": {"torch_dtype": "float16"}, "dtype": "bfloat16"}, "contradicts"),
    ({"options": {"device_map": {}}}, "empty mapping"),
    ({"options": {"devicemap": "auto"}}, "unknown key"),
])
def test_bad_placement_options_are_user_errors_before_loading(tiny_model_dir: Path, spec: dict, message: str) -> None:
    bad = ModelSpec(model=str(tiny_model_dir), **spec)
    with pytest.raises(UserError, match=message):
        HFBackend.check(bad)


def test_auto_placement_is_refused_under_data_parallel_ranks(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="data-parallel"):
        parse_options(ModelSpec(model=str(tiny_model_dir), options={"device_map": "auto"}))
    parse_options(ModelSpec(model=str(tiny_model_dir), options={"device_map": {"": "cpu"}}))  # explicit: the user's call


def test_device_map_from_the_command_line_parses_as_a_mapping() -> None:
    from tunegate.cli import _parse_kv

    assert _parse_kv(('device_map={"": cpu}', "max_memory={0: 20GiB, cpu: 64GiB}"), "--option") == {
        "device_map": {"": "cpu"}, "max_memory": {0: "20GiB", "cpu": "64GiB"}}
