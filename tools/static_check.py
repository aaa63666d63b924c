"""Static analysis of a candidate's source (AST, not regex): defence in depth behind the
dynamic checks of the evaluator.

    findings = check_source(open("candidate.py").read())
    [f for f in findings if f.severity is Severity.REJECT]

Each rule names the hack class it looks for. `REJECT` findings turn a verdict that would
otherwise be `correct` into `rejected` (a candidate that crashes keeps its own status);
`FLAG` findings become flags. The rules are tuned to pass honest kernels: a side stream
that is waited on, a cache of a *parameter* layout (keyed on the parameter's `_version`)
and alignment checks on `data_ptr()` are honest; see tests/test_static_check.py.

Rules (reject): process, shell and network modules or calls; threads; reading frames,
`gc` or `inspect`; `exec`/`eval`/`compile`/`__import__`; patching attributes of torch,
time, triton, sys, builtins or os (global precision flags included); `sys.modules` and
`sys.path`; Tensor subclasses and `__torch_function__`/`__torch_dispatch__`; side streams
with no synchronisation; try/except fallbacks around a kernel launch; forward keeping
input-dependent values (or keys from `data_ptr()`/`id()`) across calls.
Rules (flag): no Triton kernel and no C++/CUDA extension at all; lower-precision casts
(`.half()`, bf16/fp16 dtypes, TF32 dot precision).
"""
import ast
from dataclasses import dataclass
from enum import StrEnum

FORBIDDEN_MODULES = {
    "subprocess": "process spawning", "socket": "network access", "multiprocessing": "process spawning",
    "pty": "process spawning", "urllib": "network access", "http": "network access", "requests": "network access",
    "ftplib": "network access", "smtplib": "network access", "ssl": "network access", "asyncio": "background work",
    "threading": "background threads", "_thread": "background threads", "concurrent": "background threads",
    "gc": "reading other objects through gc", "inspect": "reading frames", "ctypes": "raw memory access",
    "importlib": "dynamic imports", "builtins": "patching builtins", "signal": "signal handling",
    "resource": "changing resource limits", "shutil": "file-system damage", "tools": "reaching into the evaluator",
}
FORBIDDEN_OS_CALLS = {"system", "popen", "fork", "forkpty", "kill", "killpg", "setsid", "setpgid", "execv",
                      "execve", "execvp", "execl", "execlp", "spawnv", "spawnl", "posix_spawn", "posix_spawnp",
                      "unshare", "chroot", "setns", "prctl", "putenv"}
FRAME_ATTRIBUTES = {"_getframe", "f_back", "f_locals", "f_globals", "tb_frame", "gi_frame", "cr_frame",
                    "__globals__", "_current_frames", "settrace", "setprofile"}
DYNAMIC_CODE = {"exec", "eval", "compile", "__import__", "globals", "vars", "breakpoint"}
PATCHABLE_ROOTS = {"torch", "time", "triton", "tl", "sys", "builtins", "os", "np", "numpy", "nn", "F", "math"}
PRECISION_FLAG_NAMES = {"allow_tf32", "fp32_precision", "allow_fp16_reduced_precision_reduction",
                        "allow_bf16_reduced_precision_reduction", "set_float32_matmul_precision"}
LOW_PRECISION = {"float16", "half", "bfloat16", "float8_e4m3fn", "float8_e5m2", "fp16", "bf16"}
IDENTITY_CALLS = {"data_ptr", "id", "hash", "untyped_storage", "storage", "_cdata"}
SYNC_CALLS = {"wait_stream", "synchronize", "wait_event", "wait"}


class Severity(StrEnum):
    REJECT = "reject"
    FLAG = "flag"


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int
    message: str
    severity: Severity = Severity.REJECT

    def text(self) -> str:
        return f"{self.message} (line {self.line}; rule {self.rule})"


def check_source(source: str) -> list[Finding]:
    """Every finding in `source`, in line order; a source that does not parse has none
    (the import reports the syntax error)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    findings = (_imports(tree) + _calls_and_attributes(tree) + _patching(tree) + _subclasses(tree)
                + _streams(tree) + _fallbacks(tree) + _forward_state(tree) + _kernels(tree) + _precision(tree))
    return sorted(set(findings), key=lambda f: (f.line, f.rule))


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for an attribute chain rooted at a name, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return ""


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


# ----------------------------------------------------------------------------- rules

def _imports(tree: ast.AST) -> list[Finding]:
    found = []
    for node in ast.walk(tree):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            top = name.split(".")[0]
            if top in FORBIDDEN_MODULES:
                found.append(Finding("forbidden_import", node.lineno, f"imports {name}: {FORBIDDEN_MODULES[top]}"))
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in FORBIDDEN_OS_CALLS:
                    found.append(Finding("process_call", node.lineno, f"imports os.{alias.name}: process control"))
    return found


def _calls_and_attributes(tree: ast.AST) -> list[Finding]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if node.attr in FRAME_ATTRIBUTES:
                found.append(Finding("frame_reading", node.lineno, f"reads {node.attr}: frames and globals of "
                                     "other code (the reference or the evaluator)"))
            elif dotted.startswith("os.") and node.attr in FORBIDDEN_OS_CALLS:
                found.append(Finding("process_call", node.lineno, f"calls {dotted}: processes or shell"))
            elif dotted in ("sys.modules", "sys.path", "sys.meta_path", "sys.path_hooks"):
                found.append(Finding("import_system", node.lineno, f"uses {dotted}: import shadowing or reaching "
                                     "into loaded modules"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DYNAMIC_CODE:
            found.append(Finding("dynamic_code", node.lineno, f"calls {node.func.id}(): code hidden from review"))
        elif isinstance(node, ast.Call) and _opens_outside(node):
            found.append(Finding("outside_files", node.lineno, "opens a file by absolute or parent path: secrets "
                                 "or files outside the working directory"))
    return found


def _opens_outside(call: ast.Call) -> bool:
    name = _dotted(call.func).split(".")[-1] if not isinstance(call.func, ast.Name) else call.func.id
    if name not in ("open", "Path", "listdir", "scandir", "walk", "remove", "unlink", "rename", "replace",
                    "rmdir", "makedirs", "mkdir", "symlink", "link", "chmod") or not call.args:
        return False
    first = call.args[0]
    text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else \
        first.values[0].value if isinstance(first, ast.JoinedStr) and first.values and \
        isinstance(first.values[0], ast.Constant) else ""
    return text.startswith(("/", "..", "~"))


def _patching(tree: ast.AST) -> list[Finding]:
    """Assignments, deletions and setattr on attributes of library modules."""
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") \
                and node.args:
            targets = [ast.Attribute(value=node.args[0], attr="?", lineno=node.lineno)]
        for target in targets:
            found += _patched(target, node.lineno)
        if isinstance(node, ast.Call) and _dotted(node.func).endswith("set_float32_matmul_precision"):
            found.append(Finding("precision_flags", node.lineno, "sets torch's float32 matmul precision: "
                                 "global precision flags"))
    return found


def _patched(target: ast.AST, line: int) -> list[Finding]:
    if not isinstance(target, (ast.Attribute, ast.Subscript)):
        return []
    root = _root(target)
    if not (isinstance(root, ast.Name) and root.id in PATCHABLE_ROOTS):
        return []
    name = _dotted(target) or f"{root.id}[...]"
    if isinstance(target, ast.Attribute) and target.attr in PRECISION_FLAG_NAMES:
        return [Finding("precision_flags", line, f"assigns {name}: global precision flags")]
    return [Finding("monkey_patching", line, f"assigns {name}: patches a library or the environment "
                    "(timers, synchronize, torch ops)")]


def _subclasses(tree: ast.AST) -> list[Finding]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if _dotted(base) in ("torch.Tensor", "Tensor", "torch._C.TensorBase"):
                    found.append(Finding("tensor_subclass", node.lineno, f"class {node.name} subclasses torch.Tensor"))
        if isinstance(node, ast.FunctionDef) and node.name in ("__torch_function__", "__torch_dispatch__"):
            found.append(Finding("tensor_subclass", node.lineno, f"defines {node.name}: lazy or intercepted tensors"))
    return found


def _streams(tree: ast.AST) -> list[Finding]:
    """Side streams are honest only when some code waits for them."""
    made = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and _dotted(node.func).split(".")[-1] in ("Stream", "ExternalStream")]
    if not made:
        return []
    waits = any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SYNC_CALLS
                for node in ast.walk(tree))
    if waits:
        return []
    return [Finding("unsynchronised_stream", made[0].lineno, "creates a side stream that nothing waits on: "
                    "work outside the timed stream")]


def _is_launch(node: ast.AST) -> bool:
    """`kernel[grid](...)`, or a call of something loaded by load_inline (`ext.fn(...)`)."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript)


def _fallbacks(tree: ast.AST) -> list[Finding]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        launches = any(_is_launch(inner) or _calls_extension(inner, tree) for part in node.body
                       for inner in ast.walk(part))
        swallowed = [h for h in node.handlers if not any(isinstance(s, ast.Raise) for s in ast.walk(h))]
        if launches and swallowed:
            found.append(Finding("try_fallback", node.lineno, "a try/except around a kernel launch that does not "
                                 "re-raise: a silent fallback"))
    return found


def _extension_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and _dotted(node.value.func).split(".")[-1] in ("load_inline", "load"):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _calls_extension(node: ast.AST, tree: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _dotted(node.func).split(".")[0] in _extension_names(tree)


def _forward_state(tree: ast.AST) -> list[Finding]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "forward":
            found += _forward_findings(node)
    return found


def _forward_findings(forward: ast.FunctionDef) -> list[Finding]:
    """Input-derived values (taint from the arguments) stored on `self` or used as keys
    through data_ptr()/id()/hash(): caching across calls keyed on inputs."""
    tainted = {a.arg for a in forward.args.args[1:] + forward.args.kwonlyargs}
    tainted |= {a.arg for a in (forward.args.vararg, forward.args.kwarg) if a is not None}
    found = []
    # alignment checks (`x.data_ptr() % 16`, `& 15`) use a pointer as a number, not as a key
    arithmetic = {id(inner) for node in ast.walk(forward) if isinstance(node, ast.BinOp)
                  and isinstance(node.op, (ast.Mod, ast.BitAnd)) for inner in ast.walk(node.left)}
    for node in ast.walk(forward):
        if isinstance(node, ast.Assign) and _mentions(node.value, tainted):
            tainted |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(forward):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _mentions(node.value, tainted) and any(_on_self(t) for t in targets):
                found.append(Finding("input_cache", node.lineno, "forward stores an input-dependent value on self: "
                                     "results cached across calls"))
        if isinstance(node, ast.Call) and id(node) not in arithmetic and _identity_of_input(node, tainted):
            found.append(Finding("identity_key", node.lineno, "forward takes data_ptr()/id()/hash() of an input "
                                 "as a key: output caching keyed on pointer or identity"))
    return found


SHAPE_ONLY = {"shape", "size", "dtype", "device", "stride", "dim", "ndim", "numel", "is_contiguous",
              "empty_like", "zeros_like", "ones_like", "new_empty", "new_zeros", "_version"}


def _mentions(node: ast.AST, names: set[str]) -> bool:
    """Whether `node` uses the value of one of `names`; its shape, dtype or device alone
    (a scratch buffer sized like the input) does not count."""
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.Attribute) and node.attr in SHAPE_ONLY:
        return False
    if isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] in SHAPE_ONLY:
        return False
    return any(_mentions(child, names) for child in ast.iter_child_nodes(node))


def _on_self(target: ast.AST) -> bool:
    root = _root(target)
    return isinstance(target, (ast.Attribute, ast.Subscript)) and isinstance(root, ast.Name) and root.id == "self"


def _identity_of_input(call: ast.Call, tainted: set[str]) -> bool:
    """`id(x)`, `hash(x)`, `x.data_ptr()` of an input-derived value."""
    if isinstance(call.func, ast.Name) and call.func.id in ("id", "hash"):
        return any(_mentions(arg, tainted) for arg in call.args)
    if isinstance(call.func, ast.Attribute) and call.func.attr in IDENTITY_CALLS:
        return _mentions(call.func.value, tainted)
    return False


def _kernels(tree: ast.AST) -> list[Finding]:
    jitted = any(isinstance(node, ast.FunctionDef) and any("jit" in _dotted(_root_call(d)) for d in node.decorator_list)
                 for node in ast.walk(tree))
    if jitted or _extension_names(tree) or any(isinstance(n, ast.Call) and "load_inline" in _dotted(n.func)
                                               for n in ast.walk(tree)):
        return []
    return [Finding("no_kernel", 1, "defines no Triton kernel and builds no C++/CUDA extension", Severity.FLAG)]


def _root_call(decorator: ast.AST) -> ast.AST:
    return decorator.func if isinstance(decorator, ast.Call) else decorator


def _precision(tree: ast.AST) -> list[Finding]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in LOW_PRECISION and _dotted(node).split(".")[0] in (
                "torch", "tl", "triton"):
            found.append(Finding("low_precision", node.lineno, f"uses {_dotted(node)}", Severity.FLAG))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("half", "bfloat16"):
            found.append(Finding("low_precision", node.lineno, f"casts with .{node.func.attr}()", Severity.FLAG))
        elif isinstance(node, ast.keyword) and node.arg in ("input_precision", "allow_tf32") and isinstance(
                node.value, ast.Constant) and node.value.value in ("tf32", "tf32x3", True):
            found.append(Finding("low_precision", node.value.lineno, f"{node.arg}={node.value.value!r} in a dot",
                                 Severity.FLAG))
    return found
