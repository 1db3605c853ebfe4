from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "storyteller.accounts"
    label = "accounts"
