"""The web console (/ui) in headless Chromium against a real cluster with auth on: log in, see
the workers, upload and download a file, browse folders, start and watch a repair, create
and revoke a credential, the live charts, a narrow screen and the keyboard.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``; scripts/setup
installs them for the tests); without them these tests skip, unless $KFS_REQUIRE_BROWSER is
set (CI).  With $KFS_CONSOLE_SCREENSHOTS set to a folder, each page's screenshot is saved
there (docs/console/ holds the ones shown in the README).
"""

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import Cluster, started

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ADMIN = "console-admin-token-" + "x" * 16
#: Seconds a page is given to show what a step waits for (a busy machine: generous).
WAIT = 60

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("KFS_REQUIRE_BROWSER"),
    reason="no chromium and chromedriver (apt-get install chromium chromium-driver)",
)


class Console:
    """A headless Chromium on the console of ``cluster``."""

    def __init__(self, cluster: Cluster, downloads: Path) -> None:
        self.cluster = cluster
        self.downloads = downloads
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM or "chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--disable-gpu"):  # fmt: skip
            options.add_argument(argument)
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
        service = webdriver.ChromeService(executable_path=DRIVER or "chromedriver")
        self.driver = webdriver.Chrome(options=options, service=service)

    def open(self, fragment: str = "") -> None:
        self.driver.get(f"{self.cluster.url}/ui{fragment}")

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, check: Callable[[], Any], what: str) -> Any:
        """Wait until ``check()`` gives something true (exceptions count as not yet)."""

        def attempt(_: Any) -> Any:
            try:
                return check()
            except WebDriverException:
                return False

        return WebDriverWait(self.driver, WAIT, poll_frequency=0.1).until(attempt, f"not {what}")

    def go(self, section: str) -> None:
        self.find(f'nav#nav a[href="#{section}"]').click()
        self.until(lambda: self.find(f"#{section}").is_displayed(), f"{section} shown")

    def accept(self) -> None:
        """Accept the confirm() dialog the last click opened."""

        def alert() -> Any:
            try:
                return self.driver.switch_to.alert
            except NoAlertPresentException:
                return False

        self.until(alert, "a confirmation asked").accept()

    def problem(self) -> str:
        shown = self.find("#problem")
        return shown.text if shown.is_displayed() else ""

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("KFS_CONSOLE_SCREENSHOTS")
        path = Path(folder) if folder else self.downloads.parent / "screenshots"
        path.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path / f"{name}.png"))

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with started(tmp_path_factory.mktemp("console"), token=ADMIN) as made:
        yield made


@pytest.fixture(scope="module")
def console(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    browser = Console(cluster, tmp_path_factory.mktemp("downloads"))
    browser.open()
    browser.until(lambda: browser.find("#login").is_displayed(), "the login shown")
    browser.find("#login-token").send_keys(ADMIN)
    browser.find("#login-form button").click()
    browser.until(lambda: browser.find("#cluster").is_displayed(), "logged in")
    yield browser
    browser.close()


def put(cluster: Cluster, key: str, value: bytes) -> None:
    answer = httpx.put(f"{cluster.url}{key}", content=value, headers=cluster.headers, timeout=30)
    assert answer.status_code in (201, 204), answer.text


def test_the_console_asks_for_a_credential_and_refuses_a_bad_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    page = httpx.get(f"{cluster.url}/ui", timeout=10)  # the page is open; the data is not
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    )
    assert httpx.get(f"{cluster.url}/_cluster", timeout=10).status_code == 401
    browser = Console(cluster, tmp_path)
    try:
        browser.open("#cluster")
        browser.until(lambda: browser.find("#login").is_displayed(), "the login shown")
        assert not browser.find("#nav").is_displayed()
        assert not browser.find("#cluster").is_displayed()
        browser.find("#login-token").send_keys("kfs.NOPE.nope")
        browser.find("#login-form button").click()
        browser.until(lambda: "bad_credentials" in browser.problem(), "the refusal shown")
        assert browser.find("#login").is_displayed()
        # An access key and its secret log in as its token does.
        made = httpx.post(
            f"{cluster.url}/_keys", json={"role": "read"}, headers=cluster.headers
        ).json()
        browser.find("#login-token").clear()
        browser.find("#login-token").send_keys(made["access_key"])
        browser.find("#login-secret").send_keys(made["secret_key"])
        browser.find("#login-form button").click()
        browser.until(lambda: browser.find("#cluster").is_displayed(), "logged in by access key")
        browser.find("#logout").click()
        browser.until(lambda: browser.find("#login").is_displayed(), "logged out")
    finally:
        browser.close()


def test_the_cluster_page_shows_every_worker_with_its_disk(
    console: Console, cluster: Cluster
) -> None:
    console.go("cluster")
    rows = console.until(lambda: len(r := console.all("#workers tbody tr")) == 3 and r, "3 workers")
    for row in rows:
        assert row.find_element(By.CSS_SELECTOR, ".badge.up")
    console.until(
        lambda: len(console.all("#workers progress")) == 3, "the disk bars (after heartbeats)"
    )
    console.until(
        lambda: "Under-replicated" in console.find("#cluster-cards").text, "the key counts"
    )
    history = console.find("#history").text
    assert history.count("registered") == 3
    console.screenshot("cluster")


def test_upload_browse_details_share_download_and_delete(
    console: Console, cluster: Cluster, tmp_path: Path
) -> None:
    for i in range(3):
        put(cluster, f"/photos/2024/img{i}.jpg", b"x" * 100)
    put(cluster, "/photos/cover.txt", b"cover")
    console.go("keys")
    console.until(lambda: console.find('tr[data-key="/photos/"]'), "the folder /photos/")
    assert len(console.all('tr[data-key="/photos/"]')) == 1  # a folder once, whatever it holds
    console.find('tr[data-key="/photos/"] button').click()
    console.until(lambda: console.find('tr[data-key="/photos/2024/"]'), "the subfolder")
    console.until(lambda: console.find('tr[data-key="/photos/cover.txt"] .md5').text, "cover's MD5")

    value = os.urandom(2 * 1024 * 1024 + 7)  # stored in a file on the workers: a redirect away
    upload = tmp_path / "holiday.bin"
    upload.write_bytes(value)
    console.find("#upload").send_keys(str(upload))
    console.until(
        lambda: console.find('li[data-upload="/photos/holiday.bin"][data-done="yes"]'), "uploaded"
    )
    md5 = hashlib.md5(value).hexdigest()
    console.until(
        lambda: console.find('tr[data-key="/photos/holiday.bin"] .md5').text == md5, "its MD5"
    )
    stored = httpx.get(
        f"{cluster.url}/photos/holiday.bin?direct", headers=cluster.headers, timeout=30
    )
    assert stored.content == value
    console.screenshot("keys")

    console.find('tr[data-key="/photos/holiday.bin"] button[aria-label^="Details"]').click()
    console.until(lambda: console.find("#details").is_displayed(), "the details")
    replicas = console.until(
        lambda: len(r := console.all("#details-body li[data-replica]")) == 3 and r, "3 replicas"
    )
    assert all("up" in replica.text for replica in replicas)
    assert md5 in console.find("#details-body").text
    console.find("#share-make").click()
    link = console.until(lambda: console.find("#share-url").get_attribute("value"), "a share link")
    shared = httpx.get(link, follow_redirects=True, timeout=30)  # no credential: the link is one
    assert shared.status_code == 200 and shared.content == value
    console.screenshot("key-details")
    console.find("#details form button").click()

    console.find('tr[data-key="/photos/holiday.bin"] button[aria-label^="Download"]').click()
    downloaded = console.downloads / "holiday.bin"
    console.until(
        lambda: downloaded.exists() and downloaded.read_bytes() == value, "downloaded whole"
    )

    # A file larger than a part (8 MiB) goes in parts, and is stored as one value.
    large = os.urandom(20 * 1024 * 1024 + 11)
    film = tmp_path / "film.mkv"
    film.write_bytes(large)
    console.find("#upload").send_keys(str(film))
    done = console.until(
        lambda: console.find('li[data-upload="/photos/film.mkv"][data-done="yes"]'),
        "uploaded in parts",
    )
    assert "in 3 parts" in done.text
    stored = httpx.get(f"{cluster.url}/photos/film.mkv?direct", headers=cluster.headers, timeout=60)
    assert stored.content == large
    left = httpx.get(f"{cluster.url}/%5Fuploads/?list", headers=cluster.headers).json()["keys"]
    assert len(left) == 1 and left[0].count("/") == 2  # no part: only the completed mark

    console.find('tr[data-key="/photos/holiday.bin"] button[aria-label^="Delete"]').click()
    console.accept()
    console.until(lambda: not console.all('tr[data-key="/photos/holiday.bin"]'), "the row gone")
    gone = httpx.head(f"{cluster.url}/photos/holiday.bin", headers=cluster.headers, timeout=10)
    assert gone.status_code == 404


def test_folders_page_through_many_keys(console: Console, cluster: Cluster) -> None:
    for i in range(60):
        put(cluster, f"/many/{i:03d}", b"v")
    console.go("keys")
    console.until(lambda: console.find("#crumbs button"), "the folders path")
    console.find("#crumbs button").click()  # the top folder, "/"
    console.until(lambda: console.find('tr[data-key="/many/"]'), "the folder")
    console.find('tr[data-key="/many/"] button').click()
    console.until(lambda: console.find('tr[data-key="/many/049"]'), "the first page")
    assert not console.all('tr[data-key="/many/050"]')
    console.find("#page-next").click()
    console.until(lambda: console.find('tr[data-key="/many/059"]'), "the second page")
    assert len(console.all("#key-table tbody tr")) == 10
    console.find("#page-back").click()
    console.until(lambda: console.find('tr[data-key="/many/000"]'), "the first page again")


def test_keys_named_like_routes_are_acted_on_as_keys(console: Console, cluster: Cluster) -> None:
    from kittenfs.keys import key_path

    for key in ("/x", "/delete/x", "/ui"):
        answer = httpx.put(
            f"{cluster.url}{key_path(key)}", content=key.encode(), headers=cluster.headers
        )
        assert answer.status_code in (201, 204)
    console.go("keys")
    console.until(lambda: console.find("#crumbs button"), "the folders path")
    console.find("#crumbs button").click()
    console.until(lambda: console.find('tr[data-key="/ui"] .md5').text, "/ui listed with its MD5")
    console.find('tr[data-key="/delete/"] button').click()  # the seed route's name: a folder
    console.until(lambda: console.find('tr[data-key="/delete/x"] .md5').text, "/delete/x")
    console.find('tr[data-key="/delete/x"] button[aria-label^="Delete"]').click()
    console.accept()
    console.until(lambda: not console.all('tr[data-key="/delete/x"]'), "/delete/x gone")
    kept = httpx.get(f"{cluster.url}/x", headers=cluster.headers, timeout=10)
    assert kept.content == b"/x"  # not the key the seed route /delete/x would have deleted


def test_a_repair_started_after_its_dry_run_and_watched(console: Console, cluster: Cluster) -> None:
    put(cluster, "/damaged/value", os.urandom(1024 * 1024))
    cluster.blob_file(0, "/damaged/value").unlink()  # one copy lost; repair makes it again
    console.go("jobs")
    Select(console.find("#job-kind")).select_by_value("repair")
    assert console.find("#job-dry").is_selected()  # a dry run first, by default
    console.find("#job-form button").click()
    dry = console.until(lambda: console.find('#job-list li[data-state="done"]'), "the dry run done")
    assert "(dry run)" in dry.text
    console.find("#job-dry").click()
    console.find("#job-form button").click()
    console.until(
        lambda: len(console.all('#job-list li[data-state="done"]')) == 2, "the repair done"
    )
    repair = console.all("#job-list li")[0]  # newest first
    assert "(dry run)" not in repair.text and "100 %" in repair.text
    assert "fixed: none" not in repair.text
    console.screenshot("jobs")
    assert cluster.blob_file(0, "/damaged/value").exists()


def test_a_credential_created_shown_once_used_and_revoked(
    console: Console, cluster: Cluster
) -> None:
    put(cluster, "/pub/readme", b"public")
    console.go("credentials")
    Select(console.find("#key-role")).select_by_value("read")
    prefix = console.find("#key-prefix")
    prefix.clear()
    prefix.send_keys("/pub/")
    Select(console.find("#key-expires")).select_by_value("86400")
    console.find("#key-form button").click()
    token = console.until(lambda: console.find("#created-token").text, "the new token")
    console.screenshot("credentials")
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{cluster.url}/pub/readme", headers=auth, timeout=10).content == b"public"
    assert (
        httpx.put(f"{cluster.url}/pub/other", content=b"x", headers=auth, timeout=10).status_code
        == 403
    )
    access_key = token.split(".")[1]
    row = console.until(lambda: console.find(f'tr[data-access-key="{access_key}"]'), "listed")
    assert "/pub/" in row.text and "read" in row.text
    row.find_element(By.CSS_SELECTOR, "button").click()
    console.accept()
    console.until(lambda: not console.all(f'tr[data-access-key="{access_key}"]'), "revoked")
    assert httpx.get(f"{cluster.url}/pub/readme", headers=auth, timeout=10).status_code == 401


def test_live_charts_draw_the_masters_metrics(console: Console, cluster: Cluster) -> None:
    console.go("live")
    for i in range(50):
        put(cluster, f"/live/{i}", b"v")
    console.until(lambda: "requests/s" in console.find("#now-rate").text, "a rate")

    def samples() -> int:
        return len((console.find("#chart-rate polyline").get_attribute("points") or "").split())

    console.until(lambda: samples() >= 3, "a line of three samples")
    console.until(lambda: " ms" in console.find("#now-latency").text, "the latencies")
    console.screenshot("live")


def test_a_narrow_screen_and_the_keyboard(console: Console) -> None:
    driver = console.driver
    driver.set_window_size(390, 844)
    try:
        for section in ("cluster", "live", "jobs", "keys", "credentials"):
            console.go(section)
            width = driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert width <= 1, f"{section} is {width} px wider than a phone"
        console.screenshot("narrow")
        # Every control has a name a screen reader says: a label, or aria-label.
        unnamed = driver.execute_script(
            "return [...document.querySelectorAll('input, select')].filter(e =>"
            " !e.labels.length && !e.getAttribute('aria-label')).map(e => e.id)"
        )
        assert unnamed == []
        # From the top of the page, the keyboard reaches the sections.
        console.go("cluster")
        driver.find_element(By.TAG_NAME, "body").click()
        body = driver.switch_to.active_element
        for _ in range(20):
            body.send_keys(Keys.TAB)
            body = driver.switch_to.active_element
            if (body.get_attribute("href") or "").endswith("#jobs"):
                break
        assert (body.get_attribute("href") or "").endswith("#jobs"), "Tab never reached Jobs"
        body.send_keys(Keys.ENTER)
        console.until(lambda: console.find("#jobs").is_displayed(), "jobs opened from the keyboard")
    finally:
        driver.set_window_size(1280, 900)


def test_with_auth_off_the_console_opens_without_a_login(tmp_path: Path) -> None:
    with started(tmp_path / "open", workers=1, replicas=1) as cluster:
        browser = Console(cluster, tmp_path)
        try:
            browser.open()
            browser.until(lambda: browser.find("#cluster").is_displayed(), "the cluster, no login")
            assert not browser.find("#login").is_displayed()
            browser.until(lambda: len(browser.all("#workers tbody tr")) == 1, "its worker")
        finally:
            browser.close()
