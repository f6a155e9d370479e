"""Drive an OpenAI-compatible server (`labflow serve`) with the official `openai` Python client.

Exercises, asserting on the client's parsed objects: the model list; chat and completions;
n > 1; chat log-probabilities (top_logprobs) and completions log-probabilities; streaming of
chat and completions (with usage, and n > 1), checking that streamed text equals the greedy
non-streamed text; and that errors arrive as the client's exception types. Prints one summary
line and exits non-zero on the first failure.

Run (the Rust test `openai_python_client` in tests/serve.rs does this for you):

    LABFLOW_OPENAI_PYTHON=/path/to/python-with-openai cargo test --test serve openai_python_client

or by hand against a running server:

    labflow serve --model MODEL --api-key KEY &
    python tests/reference/openai_client_check.py http://127.0.0.1:8000/v1 --api-key KEY

With --expect-echo the answers are also checked word for word against the deterministic test
teacher of tests/serve.rs (`EchoTeacher`: the last user message's words reversed, then `#j`
for choice j). Without it only properties every deterministic greedy model has are checked.
"""

import argparse
import sys

import openai


def echo_answer(text, j, max_tokens):
    """EchoTeacher's answer, as in tests/serve.rs."""
    words = list(reversed(text.split())) + [f"#{j}"]
    return " ".join(words[:max_tokens])


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="unused", help="the server's --api-key, if it has one")
    parser.add_argument("--expect-echo", action="store_true", help="check answers against tests/serve.rs's EchoTeacher")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=60)
    done = []

    # Models.
    models = client.models.list()
    ids = [m.id for m in models.data]
    check(len(ids) == 1 and models.data[0].owned_by == "labflow", f"models: {models}")
    model = ids[0]
    check(client.models.retrieve(model).id == model, "models.retrieve")
    done.append("models")

    # Chat, greedy.
    question = "the quick brown fox jumps"
    messages = [{"role": "system", "content": "answer"}, {"role": "user", "content": question}]
    chat = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=16, seed=7)
    check(chat.object == "chat.completion" and chat.id.startswith("chatcmpl-"), f"chat object: {chat}")
    check(len(chat.choices) == 1, "chat: one choice")
    c0 = chat.choices[0]
    check(c0.index == 0 and c0.message.role == "assistant" and isinstance(c0.message.content, str), f"chat choice: {c0}")
    check(c0.finish_reason in ("stop", "length"), f"chat finish_reason: {c0.finish_reason}")
    check(chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens, f"chat usage: {chat.usage}")
    check(chat.model == model, f"chat model: {chat.model}")
    if args.expect_echo:
        check(c0.message.content == echo_answer(question, 0, 16), f"chat content: {c0.message.content!r}")
        check(c0.finish_reason == "stop", "chat finish_reason")
        short = client.chat.completions.create(model=model, messages=messages, max_tokens=2)
        check(short.choices[0].message.content == "jumps fox" and short.choices[0].finish_reason == "length", f"max_tokens: {short}")
        stopped = client.chat.completions.create(model=model, messages=messages, stop=[" brown"])
        check(stopped.choices[0].message.content == "jumps fox" and stopped.choices[0].finish_reason == "stop", f"stop: {stopped}")
    done.append("chat")

    # Chat, n = 3.
    many = client.chat.completions.create(model=model, messages=messages, n=3, seed=1, max_tokens=16)
    check([c.index for c in many.choices] == [0, 1, 2], f"chat n=3 indexes: {many.choices}")
    if args.expect_echo:
        check([c.message.content for c in many.choices] == [echo_answer(question, j, 16) for j in range(3)], "chat n=3 texts")
    done.append("chat n=3")

    # Chat log-probabilities.
    lp = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=16, logprobs=True, top_logprobs=2)
    content = lp.choices[0].logprobs.content
    check(len(content) >= 1, "chat logprobs: no tokens")
    for t in content:
        check(isinstance(t.token, str) and t.logprob <= 0 and t.bytes == list(t.token.encode()), f"chat logprob entry: {t}")
        check(len(t.top_logprobs) == 2 and all(a.logprob <= 0 for a in t.top_logprobs), f"chat top_logprobs: {t.top_logprobs}")
    check("".join(t.token for t in content) == lp.choices[0].message.content, "chat logprob tokens spell the content")
    plain = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=16)
    check(plain.choices[0].logprobs is None, "chat logprobs absent unless asked")
    done.append("chat logprobs(top 2)")

    # Completions.
    prompt = "one two three four"
    comp = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16)
    check(comp.object == "text_completion" and comp.id.startswith("cmpl-"), f"completion object: {comp}")
    check(len(comp.choices) == 1 and isinstance(comp.choices[0].text, str), f"completion: {comp}")
    check(comp.choices[0].finish_reason in ("stop", "length"), "completion finish_reason")
    check(comp.usage.total_tokens == comp.usage.prompt_tokens + comp.usage.completion_tokens, "completion usage")
    if args.expect_echo:
        check(comp.choices[0].text == echo_answer(prompt, 0, 16), f"completion text: {comp.choices[0].text!r}")
    echoed = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16, echo=True)
    check(echoed.choices[0].text == prompt + comp.choices[0].text, f"echo: {echoed.choices[0].text!r}")
    done.append("completions (+echo)")

    comps = client.completions.create(model=model, prompt=prompt, n=2, seed=3, max_tokens=16)
    check([c.index for c in comps.choices] == [0, 1], "completions n=2 indexes")
    done.append("completions n=2")

    # Completions log-probabilities.
    clp = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16, logprobs=3)
    l = clp.choices[0].logprobs
    check(len(l.tokens) >= 1, "completion logprobs: no tokens")
    check(len(l.tokens) == len(l.token_logprobs) == len(l.top_logprobs) == len(l.text_offset), f"completion logprobs lengths: {l}")
    check(all(isinstance(d, dict) and 1 <= len(d) <= 3 for d in l.top_logprobs), f"completion top_logprobs: {l.top_logprobs}")
    check(all(x <= 0 for x in l.token_logprobs), "completion token_logprobs <= 0")
    check("".join(l.tokens) == clp.choices[0].text, "completion logprob tokens spell the text")
    offsets = [sum(len(t) for t in l.tokens[:i]) for i in range(len(l.tokens))]
    check(l.text_offset == offsets, f"text_offset {l.text_offset} != {offsets}")
    done.append("completions logprobs(3)")

    # Streaming chat, with usage: the streamed text equals the greedy answer.
    roles, text, finish, usage, chunks = [], "", None, None, 0
    stream = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=16, seed=7, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        chunks += 1
        check(chunk.object == "chat.completion.chunk", f"chunk object: {chunk.object}")
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    check(roles == ["assistant"], f"stream roles: {roles}")
    check(text == c0.message.content, f"streamed chat {text!r} != {c0.message.content!r}")
    check(finish == c0.finish_reason, f"streamed finish_reason {finish}")
    check(usage is not None and usage.total_tokens == chat.usage.total_tokens, f"streamed usage: {usage}")
    done.append(f"chat stream ({chunks} chunks)")

    # Streaming chat, n = 2 and logprobs.
    texts, lps = {}, {}
    for chunk in client.chat.completions.create(
        model=model, messages=messages, n=2, seed=1, max_tokens=16, stream=True, logprobs=True, top_logprobs=1
    ):
        for ch in chunk.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            if ch.logprobs and ch.logprobs.content:
                lps[ch.index] = lps.get(ch.index, 0) + len(ch.logprobs.content)
    check(sorted(texts) == [0, 1] and all(texts.values()), f"streamed n=2: {texts}")
    check(sorted(lps) == [0, 1], f"streamed logprobs: {lps}")
    if args.expect_echo:
        check(texts == {j: echo_answer(question, j, 16) for j in range(2)}, f"streamed n=2 texts: {texts}")
    done.append("chat stream n=2 + logprobs")

    # Streaming completions.
    text, finish, chunks = "", None, 0
    for chunk in client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=16, stream=True):
        chunks += 1
        check(chunk.object == "text_completion", f"chunk object: {chunk.object}")
        for ch in chunk.choices:
            text += ch.text
            finish = ch.finish_reason or finish
    check(text == comp.choices[0].text, f"streamed completion {text!r} != {comp.choices[0].text!r}")
    check(finish == comp.choices[0].finish_reason, "streamed completion finish_reason")
    done.append(f"completions stream ({chunks} chunks)")

    # Errors arrive as the client's exceptions.
    try:
        client.chat.completions.create(model=model, messages=messages, temperature=5)
        check(False, "temperature=5 was accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "temperature" in str(e), f"bad request error: {e}")
    if args.api_key != "unused":
        wrong = openai.OpenAI(base_url=args.base_url, api_key=args.api_key + "x", max_retries=0)
        try:
            wrong.models.list()
            check(False, "a wrong API key was accepted")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, f"auth error: {e}")
        done.append("errors 400/401")
    else:
        done.append("errors 400")

    print(f"openai-python {openai.__version__} against {args.base_url} ({model}): OK: " + ", ".join(done))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"openai client check FAILED: {e}", file=sys.stderr)
        sys.exit(1)
