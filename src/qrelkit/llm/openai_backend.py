"""OpenAI-compatible HTTP backend (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM).

API keys come from the environment only and are never stored in the spec, caches or logs.
Newer OpenAI models (the o-series, GPT-5) refuse ``max_tokens``, a temperature other than 1 and logprobs: the
backend learns that from the first refusal and sends what the model takes for the rest of the run.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from ..errors import QrelkitError
from .base import LLM, ChoiceProbs, Completion, LogprobsUnavailable, Message, redact
from .ratelimit import RateLimiter
from .spec import parse_spec

log = logging.getLogger(__name__)
# What a model may refuse, and what is sent instead (None: nothing, the model's default)
ADAPTABLE = {"max_tokens": "max_completion_tokens", "temperature": None, "seed": None}
REASONING_EFFORT_ENV = "QRELKIT_REASONING_EFFORT"


class OpenAIBackend(LLM):
    """``openai:MODEL``, ``azure:DEPLOYMENT`` or ``http(s)://HOST:PORT/v1#MODEL``."""

    def __init__(
        self,
        spec: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
    ):
        """``timeout`` (seconds per request) and ``max_retries`` (the SDK retries 429, 5xx, timeouts and dropped
        connections with exponential backoff and jitter, honouring Retry-After) default to QRELKIT_TIMEOUT /
        QRELKIT_RETRIES; ``rpm`` / ``tpm`` (requests / tokens per minute) to QRELKIT_RPM / QRELKIT_TPM (unset: none).
        QRELKIT_REASONING_EFFORT (e.g. ``minimal`` or ``none``), when set, is sent as ``reasoning_effort``."""
        import openai

        for name in ("httpx", "httpx2"):  # one INFO line per request otherwise (openai 3.x logs through httpx2)
            logging.getLogger(name).setLevel(logging.WARNING)
        self.spec = spec
        self.parallel_requests = True
        self.refused: set[str] = set()  # parameters this model refused; never sent again
        self.reached = False  # whether the server has answered once in this run
        self.logprobs_refused = False
        self.reasoning_effort = os.environ.get(REASONING_EFFORT_ENV) or None
        self.limiter = RateLimiter(rpm or _env_float("QRELKIT_RPM"), tpm or _env_float("QRELKIT_TPM"))
        timeout = timeout if timeout is not None else float(os.environ.get("QRELKIT_TIMEOUT", "60"))
        max_retries = max_retries if max_retries is not None else int(os.environ.get("QRELKIT_RETRIES", "5"))
        parsed = parse_spec(spec)
        self.model = parsed.model
        if parsed.backend == "openai":
            key = os.environ.get("OPENAI_API_KEY")
            if not key:
                raise QrelkitError("openai: set OPENAI_API_KEY in the environment")
            self.client: Any = openai.OpenAI(api_key=key, timeout=timeout, max_retries=max_retries)
        elif parsed.backend == "azure":
            missing = [v for v in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT") if not os.environ.get(v)]
            if missing:
                raise QrelkitError(f"azure: set {' and '.join(missing)} in the environment")
            self.client = openai.AzureOpenAI(
                api_key=os.environ["AZURE_OPENAI_API_KEY"],
                azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"],
                api_version=os.environ.get("OPENAI_API_VERSION", "2024-10-21"),
                timeout=timeout,
                max_retries=max_retries,
            )
        elif parsed.backend == "http":
            key = os.environ.get("QRELKIT_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
            self.client = openai.OpenAI(base_url=parsed.base_url, api_key=key, timeout=timeout, max_retries=max_retries)
        else:
            raise QrelkitError(f"unknown OpenAI-compatible model spec {spec!r}")

    def limit_rate(self, rpm: float | None, tpm: float | None) -> None:
        self.limiter = RateLimiter(rpm, tpm)

    def complete(
        self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0
    ) -> Completion:
        estimate = self._acquire(messages, max_tokens)
        r = self._create(messages=messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
        usage = r.usage
        self._settle(estimate, usage)
        choice = r.choices[0]
        if not choice.message.content and choice.finish_reason == "length":
            raise QrelkitError(
                f"{self.spec} used all {max_tokens} tokens of its answer before writing any (a reasoning model "
                f"thinks first): set {REASONING_EFFORT_ENV}=minimal (or none, as the model allows), or use a model "
                "that answers directly (gpt-4.1, gpt-4o)"
            )
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    def choice_probs(self, messages: list[Message], choices: list[str]) -> ChoiceProbs:
        if self.logprobs_refused:
            raise LogprobsUnavailable(f"{self.spec}: the model refuses logprobs")
        estimate = self._acquire(messages, 1)
        r = self._create(messages=messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)
        self._settle(estimate, r.usage)
        lp = r.choices[0].logprobs
        if lp is None or not lp.content:
            raise LogprobsUnavailable(f"{self.spec}: the server returned no logprobs")
        # Tokenizers can offer one choice as several tokens ("2" and " 2"): each is a way to give that answer.
        top: dict[str, float] = {}
        for t in lp.content[0].top_logprobs or []:
            top[t.token.strip()] = top.get(t.token.strip(), 0.0) + math.exp(t.logprob)
        picked = [top.get(c, 0.0) for c in choices]
        mass = sum(picked)
        if mass <= 0:
            raise LogprobsUnavailable(f"{self.spec}: none of {choices} among the top tokens")
        usage = r.usage
        return ChoiceProbs(
            probs=[p / mass for p in picked],
            mass=mass,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    def _create(self, **params: Any) -> Any:
        """One chat completion. A parameter the model refuses (:data:`ADAPTABLE`) is dropped or renamed, and the
        request sent again; so is every later request of this backend (one warning a parameter). Refused logprobs
        are :class:`LogprobsUnavailable` (never asked for again); a refused key, model or access a setup error."""
        import openai

        while True:
            sent = self._adapt(params)
            try:
                response = self.client.chat.completions.create(model=self.model, **sent)
                self.reached = True
                return response
            except (openai.BadRequestError, openai.PermissionDeniedError) as e:
                if isinstance(e, openai.BadRequestError) and e.param in ADAPTABLE and e.param in sent:
                    if e.param not in self.refused:  # (another thread may have learnt it meanwhile)
                        self.refused.add(e.param)
                        instead = ADAPTABLE[e.param]
                        log.warning("%s refuses %s: sending %s instead", self.spec, e.param, instead or "its default")
                    continue
                if "logprobs" in sent and "logprob" in f"{e.param} {e.message}".lower():
                    # reasoning models: 400, or 403 ("You are not allowed to request logprobs from this model")
                    self.logprobs_refused = True
                    raise LogprobsUnavailable(f"{self.spec}: the model refuses logprobs ({e.message})") from None
                if isinstance(e, openai.PermissionDeniedError):
                    raise self._setup_error(e) from None
                raise
            except (openai.AuthenticationError, openai.NotFoundError) as e:
                raise self._setup_error(e) from None
            except openai.APIConnectionError as e:
                if isinstance(e, openai.APITimeoutError) or self.reached:
                    raise  # a slow or dropped answer: that pair fails (after the SDK's retries), the run goes on
                raise QrelkitError(
                    f"{self.spec}: cannot reach the server ({redact(str(e.__cause__ or e))}); check the URL "
                    "and that the server runs"
                ) from None

    def _setup_error(self, e: Any) -> QrelkitError:
        """A refusal that every request of this run would get (key, model name, access): one clear error."""
        hint = {
            401: "the server refused the API key: check OPENAI_API_KEY / AZURE_OPENAI_API_KEY / QRELKIT_API_KEY",
            404: f"nothing answers for model {self.model!r}: check the model or deployment name and, for a server "
            "URL, its path (…/v1)",
            403: "this key may not use this model",
        }.get(int(e.status_code), "")
        return QrelkitError(f"{self.spec}: {hint} ({e.status_code}: {redact(str(e.message))})")

    def _adapt(self, params: dict[str, Any]) -> dict[str, Any]:
        sent = {k: v for k, v in params.items() if k not in self.refused}
        for name in self.refused & params.keys():
            if (instead := ADAPTABLE[name]) is not None:
                sent[instead] = params[name]
        if self.reasoning_effort:
            sent["reasoning_effort"] = self.reasoning_effort
        return sent

    def _acquire(self, messages: list[Message], max_tokens: int) -> int:
        """Wait for the rate limits; returns the token estimate charged (about 4 characters a token)."""
        estimate = sum(len(m["content"]) for m in messages) // 4 + max_tokens
        self.limiter.acquire(estimate)
        return estimate

    def _settle(self, estimate: int, usage: Any) -> None:
        actual = (getattr(usage, "prompt_tokens", 0) or 0) + (getattr(usage, "completion_tokens", 0) or 0)
        self.limiter.settle(estimate, actual)


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise QrelkitError(f"{name}={value!r} is not a number") from None
