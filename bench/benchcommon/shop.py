"""What the benchmarks' made-up shop looks like: its categories, pages and visitors'
browsers."""

CATEGORIES = ("shoes", "shirts", "bags", "watches", "jackets", "hats", "socks", "belts")
PAGES = ("/", "/collections/new", "/collections/sale", "/search", "/about", "/cart")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Safari/605.1.15",
)
