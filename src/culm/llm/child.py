"""``python -m culm.llm.child``: one GGUF model behind llama-cpp-python's OpenAI-compatible
server, in a process of its own.

The parent (``culm.llm.process``) starts it, talks to it over loopback HTTP and restarts it
when it dies; native code that crashes (an illegal instruction, an abort, the kernel's
out-of-memory killer) takes down this process only. It exits by itself when its parent
goes, so a server killed with SIGKILL leaves no model behind.

Requests queue for the model one at a time (``interrupt_requests`` off: a new request
must not cut the answer another run is streaming). A client that closes its response
stops the generation after the current token.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

PARENT_POLL = 0.5
"""Seconds between checks that the parent is still alive."""


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(0)  # the parent is gone: nothing would ever talk to this model again


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m culm.llm.child")
    parser.add_argument("--model", required=True, help="Path of the GGUF file.")
    parser.add_argument("--alias", required=True, help="The model name requests use.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-threads", type=int, default=0, help="0: half the cores.")
    parser.add_argument("--chat-format", default=None)
    parser.add_argument("--parent", type=int, default=os.getppid())
    args = parser.parse_args(argv)
    # a crash here is reported by the parent; a core file of the model's size, written
    # into the server's working directory, would help nobody
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    threading.Thread(target=_exit_with_parent, args=(args.parent,), daemon=True).start()

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    threads = args.n_threads or max(1, (os.cpu_count() or 2) // 2)
    model = ModelSettings(
        model=args.model,
        model_alias=args.alias,
        n_ctx=args.n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        chat_format=args.chat_format,
        verbose=False,
    )
    server = ServerSettings(host="127.0.0.1", port=args.port, interrupt_requests=False)
    app = create_app(server_settings=server, model_settings=[model])
    print(f"culm model process: {args.alias} on 127.0.0.1:{args.port}", file=sys.stderr)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
