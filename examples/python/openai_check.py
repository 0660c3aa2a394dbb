"""Lethe's /v1 through the official `openai` client: chat and completions, whole and streamed,
include_usage, the client's error classes, and a blocked stream. Prints one JSON object of what
it saw (tests/openai_python.rs asserts on it). Usage:

    openai_check.py BASE_URL API_KEY MODEL FORGOTTEN_PROMPT
"""
import json
import sys
import threading

import openai
from openai import OpenAI

base_url, api_key, model, forgotten = sys.argv[1:5]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)
out = {"version": openai.__version__}
messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]

r = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
out["chat"] = {
    "content": r.choices[0].message.content,
    "finish_reason": r.choices[0].finish_reason,
    "usage": r.usage.total_tokens if r.usage else None,
}

text, finish, usage, empty_choices = "", None, None, False
for chunk in client.chat.completions.create(
    model=model, messages=messages, max_tokens=24, temperature=0, stream=True,
    stream_options={"include_usage": True},
):
    if not chunk.choices:
        empty_choices = True
        usage = chunk.usage.total_tokens if chunk.usage else None
        continue
    text += chunk.choices[0].delta.content or ""
    finish = chunk.choices[0].finish_reason or finish
out["chat_stream"] = {"content": text, "finish_reason": finish, "usage": usage, "usage_chunk": empty_choices}

r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=0)
out["completion"] = {"text": r.choices[0].text, "finish_reason": r.choices[0].finish_reason}
text = "".join(
    c.choices[0].text
    for c in client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=0, stream=True)
    if c.choices
)
out["completion_stream"] = {"text": text}

# The blocked stream ends normally, with the filter's finish reason.
text, finish = "", None
for chunk in client.completions.create(model=model, prompt=forgotten, max_tokens=64, temperature=0, stream=True):
    if chunk.choices:
        text += chunk.choices[0].text or ""
        finish = chunk.choices[0].finish_reason or finish
out["blocked"] = {"text": text, "finish_reason": finish}


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "body": e.body}
    return None


errors = {}
errors["n"] = error_of(lambda: client.chat.completions.create(model=model, messages=messages, n=2))
errors["model"] = error_of(lambda: client.chat.completions.create(model="no-such-model", messages=messages))
bad_key = OpenAI(base_url=base_url, api_key="wrong-key-wrong-key", max_retries=0)
errors["key"] = error_of(lambda: bad_key.chat.completions.create(model=model, messages=messages))

# 429: the only slot is held by a long stream (vLLM's `ignore_eos` extension); the queue is 0.
held = client.completions.create(
    model=model, prompt="Tell me a long story.", max_tokens=1000, temperature=0, stream=True,
    extra_body={"ignore_eos": True},
)
first = next(iter(held))
errors["busy"] = error_of(lambda: client.completions.create(model=model, prompt="Hi", max_tokens=2))
held.close()
out["errors"] = errors
print(json.dumps(out))
