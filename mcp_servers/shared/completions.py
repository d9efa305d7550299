"""`completion/complete` for every server: one table of completers, keyed by prompt argument or template variable.

A server registers, per reference (a prompt name or a resource-template URI) and argument, an async function from
the typed prefix to matching values (`StackServer.complete`); `Completions.handle` answers the request from that
table. References or
arguments with no completer get an empty list, which the spec allows ("no suggestions"). Who may ask is decided
before the handler runs: the harness's middleware requires the `read` scope on the server for
`completion/complete`, the same scope that reads the prompts and resources being completed.
"""

from collections.abc import Awaitable, Callable, Sequence

from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

# The spec caps one answer at 100 values; a completer is asked for one more to learn whether more exist.
MAX_VALUES = 100
# A typed prefix longer than this matches nothing we store (ids are 36 characters, names are short).
MAX_PREFIX_CHARS = 200

Completer = Callable[[str, int], Awaitable[Sequence[str]]]
"""(prefix, limit) -> up to `limit` values starting with `prefix`, in a stable order."""


class Completions:
    """The completers of one server, and the `completion/complete` handler built from them."""

    def __init__(self) -> None:
        self._completers: dict[tuple[str, str], Completer] = {}

    def add(self, ref: str, argument: str, completer: Completer) -> None:
        """Complete `argument` of the prompt or resource template `ref` (its name or URI template)."""
        if (ref, argument) in self._completers:
            raise ValueError(f"{ref} already completes {argument!r}")
        self._completers[(ref, argument)] = completer

    def refs(self) -> frozenset[tuple[str, str]]:
        """Every (reference, argument) pair with a completer."""
        return frozenset(self._completers)

    async def handle(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        key = ref.name if isinstance(ref, PromptReference) else ref.uri
        completer = self._completers.get((key, argument.name))
        if completer is None or len(argument.value) > MAX_PREFIX_CHARS:
            return Completion(values=[], total=0, has_more=False)
        values = list(await completer(argument.value, MAX_VALUES + 1))
        has_more = len(values) > MAX_VALUES
        return Completion(values=values[:MAX_VALUES], total=None if has_more else len(values), has_more=has_more)


def uuid_prefix_range(prefix: str) -> tuple[str, str] | None:
    """The inclusive UUID range whose text starts with `prefix` (so an index serves it), or None if none can.

    `"3f2a"` -> (`3f2a0000-0000-...`, `3f2affff-ffff-...`); dashes in the prefix are ignored, case is folded.
    """
    digits = prefix.replace("-", "").lower()
    if len(digits) > 32 or any(char not in "0123456789abcdef" for char in digits):
        return None
    return digits.ljust(32, "0"), digits.ljust(32, "f")
