from quillstack.latency import Histogram, should_alert, should_page


def test_merge_then_percentile_not_average():
    fast, slow = Histogram(), Histogram()
    for _ in range(99):
        fast.observe(40)
    for _ in range(10):
        slow.observe(2300)
    merged = Histogram.merge([fast, slow])
    assert merged.percentile(50) == 50
    assert merged.percentile(99) == 3000


def test_two_consecutive_windows_alert():
    assert not should_alert([900])
    assert not should_alert([900, 700])
    assert should_alert([700, 900, 850])


def test_page_thresholds():
    assert should_page([1600], alert_minutes_firing=0)
    assert should_page([900], alert_minutes_firing=30)
    assert not should_page([900], alert_minutes_firing=10)
