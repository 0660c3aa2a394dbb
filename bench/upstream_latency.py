"""Added latency of upstream mode: time to first text and time per token of the same greedy
streamed completion, asked of instance A directly and through instance B (`--upstream` A),
alternating A, B, A, B, ... Uses the official openai client (examples/python/requirements.txt).

    upstream_latency.py A_BASE_URL B_BASE_URL MODEL [ROUNDS] [TOKENS]

Time per token is the time to the last text divided by the tokens generated. Prints one line per request and a summary of medians as JSON.
"""
import json
import statistics
import sys
import time

from openai import OpenAI

a_url, b_url, model = sys.argv[1:4]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
tokens = int(sys.argv[5]) if len(sys.argv) > 5 else 64


def once(url):
    client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)
    started = time.perf_counter()
    first = last = None
    usage = None
    for chunk in client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=tokens, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    ):
        now = time.perf_counter()
        if chunk.choices and chunk.choices[0].text:
            first = first or now
            last = now
        if chunk.usage:
            usage = chunk.usage.completion_tokens
    # Per token over the whole stream: the hold-back releases its last words in one burst at
    # the end, so the spacing of the chunks alone would flatter a second hold-back.
    return first - started, (last - started) / max(usage, 1)


seen = {"A": [], "B": []}
for r in range(rounds):
    for side, url in (("A", a_url), ("B", b_url)):
        ttft, per_token = once(url)
        seen[side].append((ttft, per_token))
        print(f"round {r} {side}: ttft {ttft * 1000:.0f} ms, per token {per_token * 1000:.1f} ms", file=sys.stderr)
summary = {
    side: {
        "ttft_ms_p50": round(statistics.median(t for t, _ in v) * 1000, 1),
        "per_token_ms_p50": round(statistics.median(p for _, p in v) * 1000, 2),
    }
    for side, v in seen.items()
}
print(json.dumps(summary))
