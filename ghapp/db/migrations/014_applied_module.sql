-- The Terraform directory an environment was last applied with (a catalog module, or a repository's own at the
-- commit; NULL: the operator's GHAPP_TERRAFORM_MODULE). Its destroy runs with that module, even after
-- `.github/preview.yml` names another.
ALTER TABLE environments ADD COLUMN module text;
