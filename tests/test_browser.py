"""Real-browser test of chapter 04's noising widget: JupyterLab + headless Debian Chromium driven by Playwright.

Starts its own JupyterLab on 127.0.0.1 (free port, random token, a temp root holding a smoke-profile copy of
nbs/04_noise.ipynb), runs every cell in the browser, drags the t slider and checks that the displayed GIR and
pixel images change. Skips when /usr/bin/chromium is missing (tools/install.sh --browser installs it as root).
"""
import base64, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

from conftest import NBS

CHROMIUM = Path(os.environ.get("GAUSSDIFF_CHROMIUM", "/usr/bin/chromium"))
NOTEBOOK = Path(os.environ.get("GAUSSDIFF_BROWSER_NB", NBS / "04_noise.ipynb"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: install Debian's chromium and "
                                 "chromium-driver (apt-get install -y chromium chromium-driver, or make test as root)")]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed: pip install playwright")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def smoke_copy(src: Path, dst: Path) -> Path:
    "The notebook with papermill's smoke parameters injected (not executed): the browser runs it."
    import nbformat, papermill as pm
    from jupyter_client.kernelspec import KernelSpecManager
    pm.execute_notebook(str(src), str(dst), parameters=dict(profile="smoke"), prepare_only=True,
                        kernel_name="python3", progress_bar=False)
    nb = nbformat.read(dst, as_version=4)   # the installed kernel's exact spec, so Lab starts it without asking
    spec = KernelSpecManager().get_kernel_spec("python3")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": spec.display_name, "language": spec.language}
    nbformat.write(nb, dst)
    return dst


def wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f"JupyterLab exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab(tmp_path):
    "A private JupyterLab server (own port, token, root, config and runtime dirs); killed with its kernels after."
    root = tmp_path / "root"; root.mkdir()
    nb = smoke_copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "run"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"), MPLBACKEND="agg")
    log = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.workspaces_dir={tmp_path / 'ws'}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield dict(url=f"http://127.0.0.1:{port}/lab/tree/{nb.name}?token={token}", log=log)
    finally:
        # SIGTERM: the server shuts its kernels down and exits; SIGKILL its process group if it hangs
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(5)
        kill_leftover_kernels(tmp_path / "run")


def kill_leftover_kernels(runtime_dir: Path):
    "Kernels run in their own sessions; kill any still alive whose connection file lies in our runtime dir."
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(runtime_dir) in cmdline.read_bytes().decode(errors="ignore"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError): pass


IMAGE_BYTES_JS = """async (el) => {
    const r = await fetch(el.src); const b = new Uint8Array(await r.arrayBuffer());
    let s = ''; for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]); return btoa(s); }"""


def image_bytes(page, selector: str) -> bytes:
    return base64.b64decode(page.eval_on_selector(selector, IMAGE_BYTES_JS))


def accept_kernel_dialog(page, wait_ms: int = 2000):
    "If Lab asks which kernel to use, take the one it proposes (python3)."
    dialog = page.locator(".jp-Dialog")
    try: dialog.first.wait_for(state="visible", timeout=wait_ms)
    except playwright_sync.TimeoutError: return
    if "Select Kernel" in dialog.first.inner_text():
        dialog.first.locator("button", has_text="Select").first.click()
        dialog.first.wait_for(state="hidden", timeout=10_000)


def run_all_cells(page):
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


NOTEBOOK_STATE_JS = """() => {
    const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
    const err = [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(e => e.textContent).filter(t => /Error|Traceback/.test(t));
    return {done: p.length > 0 && p.every(s => /^\\[\\d+\\]:$/.test(s)), errors: err}; }"""


def wait_until_all_cells_ran(page, timeout: float = 120):
    "Poll the notebook until every code cell has an execution number; fail fast with the traceback on an error."
    t0 = time.time()
    while time.time() - t0 < timeout:
        state = page.evaluate(NOTEBOOK_STATE_JS)
        if state["errors"]: raise AssertionError("a notebook cell failed in the browser:\n" + state["errors"][0][-3000:])
        if state["done"]: return
        time.sleep(0.5)
    raise TimeoutError(f"the notebook did not finish running within {timeout}s")


def test_noise_slider_redraws_images_in_a_real_browser(lab, tmp_path):
    t0 = time.time()
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(lab["url"], wait_until="domcontentloaded", timeout=60_000)
            # the notebook is open and its kernel has started
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            accept_kernel_dialog(page)
            run_all_cells(page)
            wait_until_all_cells_ran(page)

            slider, gir, pix = ".gaussdiff-t", "img.gaussdiff-gir", "img.gaussdiff-pixels"
            page.locator(gir).first.scroll_into_view_if_needed()
            page.wait_for_selector(gir, state="visible", timeout=30_000)
            before = {s: image_bytes(page, s) for s in (gir, pix)}
            shot_before = page.locator(gir).screenshot()
            readout = page.locator(f"{slider} .widget-readout")
            t_before = readout.inner_text()

            # drag the slider's handle to ~80% of its track, like a learner would
            track = page.locator(f"{slider} .noUi-target, {slider} .slider-container").first.bounding_box()
            handle = page.locator(f"{slider} .noUi-handle").first.bounding_box()
            page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + 0.8 * track["width"], handle["y"] + handle["height"] / 2, steps=8)
            page.mouse.up()

            page.wait_for_function("([sel, t]) => document.querySelector(sel + ' .widget-readout').textContent != t",
                                   arg=[slider, t_before], timeout=10_000)
            deadline = time.time() + 20
            while time.time() < deadline and image_bytes(page, gir) == before[gir]: time.sleep(0.2)
            after = {s: image_bytes(page, s) for s in (gir, pix)}
            t_after = readout.inner_text()
            assert int(t_after) > int(t_before), (t_before, t_after)
            assert after[gir] != before[gir], "the GIR image did not change when the slider moved"
            assert after[pix] != before[pix], "the pixel image did not change when the slider moved"
            shot_after = page.locator(gir).screenshot()
            assert shot_after != shot_before
            if os.environ.get("GAUSSDIFF_BROWSER_SHOTS"):  # keep what the browser showed, for a human to look at
                shots = Path(os.environ["GAUSSDIFF_BROWSER_SHOTS"]); shots.mkdir(parents=True, exist_ok=True)
                page.locator(".gaussdiff-t").first.locator("xpath=../../..").screenshot(path=str(shots / "widget_after.png"))
                (shots / "gir_before.png").write_bytes(shot_before); (shots / "gir_after.png").write_bytes(shot_after)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"screenshot: {tmp_path / 'failure.png'}; server log: {lab['log']}")
            raise
        finally:
            browser.close()
    print(f"browser test took {time.time() - t0:.1f}s")
