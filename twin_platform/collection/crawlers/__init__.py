"""Crawlers, one module per source, chosen by URL in `dispatcher`; all HTTP goes through `http.SafeClient`.

Import from the modules (`twin_platform.collection.crawlers.dispatcher.crawl`): this package stays empty so that
importing the importers or the result types does not pay for the HTTP stack.
"""
