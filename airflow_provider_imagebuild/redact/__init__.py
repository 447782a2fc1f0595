"""Secrets kept out of everything stored, logged or printed.

``patterns`` holds the redactor every task, the store and the CLI use (the secret-looking shapes of
text, and :func:`~.patterns.is_secret_key`, the one rule of what a secret-looking key is);
``shell`` adds what only the shell that ran the CLI knows (its secret-named environment variables,
the secrets given on its command line).
"""
