from django.db import migrations

# The presets every site starts with; the admin may change or delete them.
SHIPPED = [
    (
        "Balanced",
        "The site's usual mix of surprise and sense.",
        {"temperature": 0.8, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.1},
        0,
    ),
    (
        "Creative",
        "Bolder word choices and turns; wanders more.",
        {"temperature": 1.1, "top_p": 0.98, "top_k": 100, "repetition_penalty": 1.05},
        1,
    ),
    (
        "Precise",
        "Safer, more predictable continuations.",
        {"temperature": 0.5, "top_p": 0.9, "top_k": 30, "repetition_penalty": 1.15},
        2,
    ),
]


def ship(apps, schema_editor):
    Preset = apps.get_model("generation", "Preset")
    for name, description, params, order in SHIPPED:
        Preset.objects.get_or_create(name=name, defaults={"description": description, "params": params, "order": order})


def unship(apps, schema_editor):
    apps.get_model("generation", "Preset").objects.filter(name__in=[name for name, *_ in SHIPPED]).delete()


class Migration(migrations.Migration):
    dependencies = [("generation", "0003_presets")]
    operations = [migrations.RunPython(ship, unship)]
