import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.browser import inspect_page, require_chromium  # noqa: E402
from rluf.run.html import Report  # noqa: E402


@pytest.mark.browser
def test_embedded_images_load_and_tables_present(tmp_path):
    require_chromium()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "roc.png")
    report = Report("test report")
    report.heading("Signals")
    report.table([{"signal": "love", "rate": 0.001}], table_id="signals")
    report.image(tmp_path / "roc.png", "ROC")
    path = report.write(tmp_path / "report.html")
    (tmp_path / "roc.png").unlink()  # the report must not depend on files beside it
    info = inspect_page(path)
    assert info["images"] == [{"alt": "ROC", "ok": True}]
    assert info["tables"] == ["signals"]


@pytest.mark.browser
def test_broken_image_is_detected(tmp_path):
    require_chromium()
    path = tmp_path / "r.html"
    path.write_text('<html><body><img alt="x" src="data:image/png;base64,AAAA"></body></html>')
    assert inspect_page(path)["images"] == [{"alt": "x", "ok": False}]
