"""The `hf` backend on tiny real models: exact maths, batching invariance, loading rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tunegate.backends._hf_loglik import windows
from tunegate.backends.hf import HFBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest

pytestmark = pytest.mark.slow

PAIRS = [
    ("Question: What is the capital of France? Answer:", " Paris."),
    ("", "The quick brown fox jumps over the lazy dog."),
    ("Hello ", "world"),  # trailing space moves to the continuation
    ("Please restart the router,", " wait thirty seconds, and try again."),
    ("a", " b c d e f g"),
]


@pytest.fixture(scope="module")
def gpt2(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(ModelSpec(model=str(tiny_model_dir), batch_size=4))


@pytest.fixture(scope="module")
def llama(tiny_llama_dir: Path) -> HFBackend:
    return HFBackend(ModelSpec(model=str(tiny_llama_dir), batch_size=4))


@pytest.fixture(scope="module")
def mistral(tmp_path_factory: pytest.TempPathFactory) -> HFBackend:
    """Sliding-window attention (window 4): padding, splicing and shared prefixes must respect the window."""
    from tunegate.finetune.tiny import build_tiny_model

    return HFBackend(ModelSpec(model=str(build_tiny_model(tmp_path_factory.mktemp("tiny-mistral"), "mistral")),
                               batch_size=4))


def direct_loglikelihood(backend: HFBackend, context: str, continuation: str) -> tuple[float, bool]:
    """The textbook computation: one unpadded forward over context+continuation, full log-softmax."""
    tok = backend.tokenizer
    if context == "":
        ctx = [tok.bos_token_id]
        cont = tok(continuation, add_special_tokens=False)["input_ids"]
    else:
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        cont = whole[len(ctx):]
    seq = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(seq).logits[0].float(), -1)
    preds = logp[len(ctx) - 1 : -1]
    tgt = torch.tensor(cont)
    return float(preds.gather(-1, tgt[:, None]).sum()), bool((preds.argmax(-1) == tgt).all())


@pytest.mark.parametrize("fixture", ["gpt2", "llama", "mistral"])
def test_loglikelihood_equals_direct_computation(fixture: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(fixture)
    got = backend.loglikelihood([LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS])
    for (c, x), resp in zip(PAIRS, got, strict=True):
        want, greedy = direct_loglikelihood(backend, c, x)
        assert resp.loglikelihood == pytest.approx(want, abs=1e-4)
        assert resp.is_greedy is greedy


@pytest.mark.parametrize("fixture", ["gpt2", "llama", "mistral"])
def test_loglikelihood_independent_of_batch_size_and_padding(fixture: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(fixture)
    reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS]
    results = {}
    for bs in (1, 2, 5):
        backend.spec = backend.spec.model_copy(update={"batch_size": bs})
        results[bs] = [r.loglikelihood for r in backend.loglikelihood(reqs)]
    backend.spec = backend.spec.model_copy(update={"batch_size": 4})
    for bs in (2, 5):
        assert results[bs] == pytest.approx(results[1], abs=1e-4)


def test_is_greedy_true_for_the_greedy_continuation(gpt2: HFBackend) -> None:
    context = "Thank you for"
    text = gpt2.generate([GenerateRequest(prompt=context, max_new_tokens=4)])[0].text
    ids = gpt2.tokenizer(context + text, add_special_tokens=False)["input_ids"]
    ctx_ids = gpt2.tokenizer(context, add_special_tokens=False)["input_ids"]
    assert ids[: len(ctx_ids)] == ctx_ids  # the round trip re-tokenises the same way
    resp = gpt2.loglikelihood([LoglikelihoodRequest(context=context, continuation=text)])[0]
    assert resp.is_greedy is True
    other = gpt2.loglikelihood([LoglikelihoodRequest(context=context, continuation=text + " zebra")])[0]
    assert other.is_greedy is False


def test_rolling_windows_cover_every_target_once() -> None:
    ctx, cont = [0], list(range(1, 26))
    rows = windows(ctx, cont, max_length=8)
    targets = [t for _, tg in rows for t in tg]
    assert targets == cont
    seq = ctx + cont
    for inputs, tg in rows:
        assert len(inputs) <= 8
        # inputs end right before the last target, and every target has its predecessor as input
        last = seq.index(tg[-1])
        assert inputs[-1] == seq[last - 1]
        assert len(inputs) >= len(tg)


def test_long_continuation_scored_in_rolling_windows_matches_manual(gpt2: HFBackend) -> None:
    text = " ".join(["the invoice lists the totals"] * 60)  # > 128 tokens: several windows
    resp = gpt2.loglikelihood([LoglikelihoodRequest(context="", continuation=text)])[0]
    tok = gpt2.tokenizer
    cont = tok(text, add_special_tokens=False)["input_ids"]
    assert resp.n_tokens == len(cont) > gpt2.max_length
    total = 0.0
    for inputs, targets in windows([tok.bos_token_id], cont, gpt2.max_length):
        with torch.no_grad():
            logp = torch.log_softmax(gpt2.model(torch.tensor([inputs])).logits[0].float(), -1)
        preds = logp[-len(targets):]
        total += float(preds.gather(-1, torch.tensor(targets)[:, None]).sum())
    assert resp.loglikelihood == pytest.approx(total, abs=1e-3)


def test_generation_greedy_matches_transformers_generate(gpt2: HFBackend) -> None:
    prompts = ["Thank you for", "Please restart", "The invoice lists the items, the totals and"]
    ours = gpt2.generate([GenerateRequest(prompt=p, max_new_tokens=10) for p in prompts])
    tok = gpt2.tokenizer
    for p, resp in zip(prompts, ours, strict=True):
        ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            ref = gpt2.model.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=tok.eos_token_id)
        new = ref[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        assert resp.text == tok.decode(new, skip_special_tokens=True)
        assert resp.n_tokens == len(new)


def test_generation_honours_stop_strings_and_max_new_tokens(gpt2: HFBackend) -> None:
    free = gpt2.generate([GenerateRequest(prompt="Thank you for", max_new_tokens=12)])[0]
    assert free.n_tokens == 12 and free.finish_reason == "length"
    stop = free.text.strip()[:2]  # a string the model is known to produce
    stopped = gpt2.generate([GenerateRequest(prompt="Thank you for", max_new_tokens=12, stop=(stop,))])[0]
    assert stop not in stopped.text
    assert stopped.finish_reason == "stop"
    assert free.text.startswith(stopped.text)
    assert stopped.n_tokens < 12
    short = gpt2.generate([GenerateRequest(prompt="Thank you for", max_new_tokens=3)])[0]
    assert short.n_tokens == 3


def test_generation_independent_of_batch_and_seeded_sampling_reproducible(gpt2: HFBackend) -> None:
    reqs = [
        GenerateRequest(prompt="Thank you for", max_new_tokens=8),
        GenerateRequest(prompt="The", max_new_tokens=6, stop=("e",)),
        GenerateRequest(prompt="Please restart the router", max_new_tokens=8, temperature=1.0, seed=3),
        GenerateRequest(prompt="Please restart the router", max_new_tokens=8, temperature=1.0, seed=4),
    ]
    outs = {}
    for bs in (1, 4):
        gpt2.spec = gpt2.spec.model_copy(update={"batch_size": bs})
        outs[bs] = [r.text for r in gpt2.generate(reqs)]
    gpt2.spec = gpt2.spec.model_copy(update={"batch_size": 4})
    assert outs[1] == outs[4]
    assert outs[1][2] != outs[1][3]  # different seeds, different samples
    again = gpt2.generate([reqs[2]])[0].text
    assert again == outs[1][2]


def test_fingerprint_depends_on_bytes_not_names(tiny_model_dir: Path, tmp_path: Path, gpt2: HFBackend) -> None:
    copy = tmp_path / "renamed-copy"
    shutil.copytree(tiny_model_dir, copy)
    assert HFBackend(ModelSpec(model=str(copy))).fingerprint() == gpt2.fingerprint()
    # change one weight: a different model under the same name
    from safetensors.torch import load_file, save_file

    weights = load_file(copy / "model.safetensors")
    key = next(iter(weights))
    weights[key] = weights[key] + 1.0
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert HFBackend(ModelSpec(model=str(copy))).fingerprint() != gpt2.fingerprint()


def test_missing_folder_and_pickle_weights_are_user_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model folder not found"):
        HFBackend.check(ModelSpec(model=str(tmp_path / "nope")))
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    from safetensors.torch import load_file

    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(UserError, match="safetensors only"):
        HFBackend.check(ModelSpec(model=str(pickled)))
    HFBackend.check(ModelSpec(model=str(pickled), allow_pickle=True))  # opting in is allowed
    with pytest.raises(UserError, match="adapter folder not found"):
        HFBackend.check(ModelSpec(model=str(tiny_model_dir), adapter=str(tmp_path / "no-adapter")))


def test_peft_adapter_changes_outputs_and_identity(tiny_model_dir: Path, tmp_path: Path, gpt2: HFBackend) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    (adapter / "tunegate_checkpoint.json").write_text(json.dumps({"step": 7, "data_sha256": "ab" * 32}))
    tuned = HFBackend(ModelSpec(model=str(tiny_model_dir), adapter=str(adapter)))
    req = [LoglikelihoodRequest(context="Hello", continuation=" world")]
    assert tuned.loglikelihood(req)[0].loglikelihood != pytest.approx(gpt2.loglikelihood(req)[0].loglikelihood, abs=1e-3)
    assert tuned.fingerprint() != gpt2.fingerprint()
    assert tuned.identity()["finetune"]["step"] == 7


def test_shared_prefix_multiple_choice_equals_direct_and_runs_each_context_once(gpt2: HFBackend) -> None:
    questions = [
        ("Question: What is the capital of France? Answer:", [" Paris.", " Berlin is the answer", " Rome", " I do not know"]),
        ("Thank you for contacting support. How", [" can I help you today?", " are you", " x"]),
        ("Please restart the router,", [" wait thirty seconds, and try again.", " now"]),
    ]
    reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, xs in questions for x in xs]
    gpt2.spec = gpt2.spec.model_copy(update={"batch_size": 64})
    before = gpt2.forward_passes
    got = gpt2.loglikelihood(reqs)
    assert gpt2.forward_passes - before == 2  # one prefix pass + one continuation pass for all 9 choices
    for req, resp in zip(reqs, got, strict=True):
        want, greedy = direct_loglikelihood(gpt2, req.context, req.continuation)
        assert resp.loglikelihood == pytest.approx(want, abs=1e-4)
        assert resp.is_greedy is greedy
    for bs, budget in ((1, 64), (3, 128), (64, 100_000)):
        gpt2.spec = gpt2.spec.model_copy(update={"batch_size": bs, "batch_tokens": budget})
        again = gpt2.loglikelihood(reqs)
        assert [r.loglikelihood for r in again] == pytest.approx([r.loglikelihood for r in got], abs=1e-4)
    gpt2.spec = gpt2.spec.model_copy(update={"batch_size": 4, "batch_tokens": 8192})


@pytest.mark.parametrize("fixture", ["llama", "mistral"])
def test_shared_prefix_matches_direct(fixture: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(fixture)
    reqs = [LoglikelihoodRequest(context="Question: What is the capital of France? Answer:", continuation=x)
            for x in (" Paris.", " Lyon or maybe Marseille", " z")]
    for req, resp in zip(reqs, backend.loglikelihood(reqs), strict=True):
        assert resp.loglikelihood == pytest.approx(direct_loglikelihood(backend, req.context, req.continuation)[0],
                                                   abs=1e-4)


def test_hub_id_resolves_from_the_local_hub_cache_offline(tiny_model_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, gpt2: HFBackend) -> None:
    """A hub id goes through huggingface_hub's snapshot lookup; offline, the local cache answers."""
    import huggingface_hub.constants as hub_constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-support"
    snap = repo / "snapshots" / commit
    shutil.copytree(tiny_model_dir, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    HFBackend.check(ModelSpec(model="acme/tiny-support"))  # not a local path: no folder checks
    hub = HFBackend(ModelSpec(model="acme/tiny-support"))
    assert hub.folder == snap
    assert hub.fingerprint() == gpt2.fingerprint()  # same bytes, same identity
    with pytest.raises(UserError, match="could not fetch from the hub"):
        HFBackend(ModelSpec(model="acme/not-cached"))


@pytest.mark.parametrize("fixture", ["gpt2", "llama", "mistral"])
def test_refilled_slots_give_the_same_texts_as_one_at_a_time(fixture: str, request: pytest.FixtureRequest) -> None:
    """More prompts than slots, rows stopping at different steps: waiting prompts join mid-decode."""
    backend = request.getfixturevalue(fixture)
    words = ["Thank you for", "Please restart the router", "The invoice lists", "Your refund was", "Sure! Here are",
             "The customer asked how to reset the password and", "0 1 2", "Question: What is", "I cannot help"]
    reqs = [GenerateRequest(prompt=w, max_new_tokens=3 + 2 * (i % 4), stop=(("e",) if i % 3 == 0 else ()),
                            temperature=(0.8 if i == 4 else 0.0), seed=i) for i, w in enumerate(words)]
    backend.spec = backend.spec.model_copy(update={"batch_size": 1})
    single = backend.generate(reqs)
    backend.spec = backend.spec.model_copy(update={"batch_size": 4})
    before = backend.forward_passes
    refilled = backend.generate(reqs)
    passes = backend.forward_passes - before
    assert [(r.text, r.n_tokens, r.finish_reason) for r in refilled] == [(r.text, r.n_tokens, r.finish_reason) for r in single]
    # without refilling, three batches of <= 4 rows would each decode to their longest row (9 + 9 + 3 steps + 3 prefills)
    assert passes < 24, passes


@pytest.mark.parametrize("fixture", ["gpt2", "llama", "mistral"])
def test_long_refilled_runs_with_compaction_and_trimming_match_one_at_a_time(fixture: str,
                                                                             request: pytest.FixtureRequest) -> None:
    """Many refills: rows leave (lazily compacted), leading padding is trimmed, new rows are spliced in."""
    backend = request.getfixturevalue(fixture)
    prompts = [" ".join(["word"] * (1 + (7 * i) % 23)) + f" item {i}:" for i in range(18)]
    reqs = [GenerateRequest(prompt=p, max_new_tokens=2 + (5 * i) % 23, stop=(("o",) if i % 4 == 0 else ()))
            for i, p in enumerate(prompts)]
    backend.spec = backend.spec.model_copy(update={"batch_size": 1})
    single = backend.generate(reqs)
    for bs in (3, 6):
        backend.spec = backend.spec.model_copy(update={"batch_size": bs})
        batched = backend.generate(reqs)
        assert [(r.text, r.n_tokens, r.finish_reason) for r in batched] == [
            (r.text, r.n_tokens, r.finish_reason) for r in single], bs
    backend.spec = backend.spec.model_copy(update={"batch_size": 4})


def test_many_requests_sharing_one_context_respect_the_token_budget(gpt2: HFBackend) -> None:
    """Perplexity and CrowS-Pairs requests all share the empty context: they must not become one huge pass."""
    docs = [" ".join(["support"] * (3 + i % 7)) + f" ticket {i}." for i in range(30)]
    reqs = [LoglikelihoodRequest(context="", continuation=d) for d in docs]
    seen: list[tuple[int, int]] = []
    hook = gpt2.model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    gpt2.spec = gpt2.spec.model_copy(update={"batch_size": 4, "batch_tokens": 64})
    try:
        got = gpt2.loglikelihood(reqs)
    finally:
        hook.remove()
        gpt2.spec = gpt2.spec.model_copy(update={"batch_size": 4, "batch_tokens": 8192})
    assert seen and all(rows * width <= 64 for rows, width in seen), seen
    for r, d in zip(got, docs, strict=True):
        assert r.loglikelihood == pytest.approx(direct_loglikelihood(gpt2, "", d)[0], abs=1e-4)
