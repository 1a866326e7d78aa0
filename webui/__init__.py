"""Pure helpers of the web app (``app.py``): interface strings (``i18n``), flags and engine choice
(``config``), and the conversion of tutor results into what the page shows (``view``). No handler
lives here; nothing here needs a browser to test."""
